"""DenseNet (Huang et al., 2017), torchvision's ``densenet121``, with every backward by hand.

Twin: ``torch_ref/densenet.py`` (same classes, arguments, ``state_dict`` keys, order and shapes,
which are exactly torchvision's, so its ImageNet checkpoint loads with ``strict=True``).

Shape letters: N batch, C₀ channels entering a dense block, g growth rate (channels each dense
layer adds), ℓ number of layers in the block, Cᵢ = C₀ + i·g channels entering layer i,
C = C₀ + ℓ·g channels leaving the block, H×W the block's spatial size, B = bn_size·g.

The network (torchvision's ``DenseNet``)::

    features: conv0 7×7/2 pad 3 (no bias) → norm0 → relu0 → pool0 MaxPool 3/2 pad 1
              → denseblock1 → transition1 → denseblock2 → transition2 → ... → denseblock_k → norm5
    then:     ReLU → global average pool → flatten → classifier (Linear)

    dense layer i:  x_{0..i-1} (Cᵢ channels) → norm1 → relu1 → conv1 1×1 (B) → norm2 → relu2
                    → conv2 3×3 pad 1 (g) [→ dropout]  = x_i
    transition:     norm → relu → conv 1×1 (C → C/2) → pool AvgPool 2/2

Memory: the concatenation without copies. Layer i reads the concatenation of everything before
it, [x₀, x₁, ..., x_{i−1}] (Cᵢ channels). Concatenating afresh for every layer (``torch.cat`` in
torchvision's ``_DenseLayer``) copies Σᵢ Cᵢ = ℓ·C₀ + g·ℓ(ℓ−1)/2 channel maps per block: quadratic in
ℓ. Here ``_DenseBlock`` allocates its output once, an (N, C, H, W) buffer, copies x₀ into its first
C₀ channels, and lets layer i read the view ``buf[:, :Cᵢ]`` and write its g new channels into
``buf[:, Cᵢ:Cᵢ+g]``: every feature map is written exactly once (C channel maps per block) and the
buffer *is* the block's output, so no final concatenation either. The backward mirrors it: one
(N, C, H, W) gradient buffer, in which layer i (visited last to first) reads the gradient of its
own g channels (complete by then: later layers have already added theirs) and adds its input
gradient into ``grad[:, :Cᵢ]`` in place. For densenet121 (C₀ = 64, 128, 256, 512; ℓ = 6, 12, 24,
16; g = 32) concatenating afresh per layer, plus the block's final concatenation, would copy 4.4×,
8.1×, 15.6× and 12.8× the channel maps the shared buffers write (``concat_copy_ratio``); at batch
16, 224² that is 225 MB of float32 copies per forward in block 1 alone instead of 51 MB.
Measured with tracemalloc (block 1, batch 4, 56², float32, layer buffers warm): peak 130 MB with the
shared buffer against 136 MB concatenating per layer, 115 MB held afterwards either way. In NumPy a
per-layer concatenation is transient (it dies once norm1 has normalised it), so the buffer saves
copy traffic more than peak memory; torch's autograd instead keeps every concatenation alive for
backward, which is the quadratic memory torchvision's ``memory_efficient=True`` recomputes away.
What stays per layer here is what the layers cache for backward: norm1's normalised input (Cᵢ
channels), ReLU masks, the convolutions' column buffers, so a block's cache is still quadratic in ℓ.
This NumPy twin does no recomputation (``memory_efficient`` is accepted and stored, see ``DenseNet``).
"""

from __future__ import annotations

import re

import numpy as np

from . import init
from .conv import Conv2d
from .layers import Dropout, Linear, ReLU
from .module import Module, Sequential
from .norm import BatchNorm2d
from .pooling import AvgPool2d, MaxPool2d

__all__ = ["DenseNet", "densenet121", "remap_legacy_keys", "concat_copy_ratio"]


class _Named(Sequential):
    """A ``Sequential`` whose children have names (torch's ``nn.Sequential(OrderedDict(...))``):
    the names become the ``state_dict`` prefixes, forward and backward still run them in order."""

    def __init__(self, *named: tuple[str, Module]):
        Module.__init__(self)
        for name, m in named:
            setattr(self, name, m)


class _DenseLayer(_Named):
    """BN-ReLU-Conv1×1(B)-BN-ReLU-Conv3×3(g), optionally followed by dropout.

    Twin: ``torch_ref.densenet._DenseLayer`` (torchvision's, keys ``norm1``, ``conv1``, ``norm2``,
    ``conv2``). Shape: (N, Cᵢ, H, W) -> (N, g, H, W). The input is the view of the block buffer
    holding every earlier feature map; nothing here keeps a reference to it (norm1 caches its own
    normalised copy), so later layers may keep writing into the buffer.
    """

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool = False, dtype=np.float32):
        mods = [
            ("norm1", BatchNorm2d(num_input_features, dtype=dtype)),
            ("relu1", ReLU()),
            ("conv1", Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False, dtype=dtype)),
            ("norm2", BatchNorm2d(bn_size * growth_rate, dtype=dtype)),
            ("relu2", ReLU()),
            ("conv2", Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False, dtype=dtype)),
        ]
        if drop_rate > 0:  # torchvision calls F.dropout; a stateless module here, so no key changes
            mods.append(("dropout", Dropout(float(drop_rate))))
        super().__init__(*mods)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient


class _DenseBlock(Module):
    """ℓ dense layers sharing one (N, C₀ + ℓ·g, H, W) feature buffer (see the module docstring).

    Twin: ``torch_ref.densenet._DenseBlock`` (keys ``denselayer1`` ... ``denselayerℓ``).
    Shape: (N, C₀, H, W) -> (N, C₀ + ℓ·g, H, W), the concatenation [x₀, x₁, ..., x_ℓ].
    """

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float, memory_efficient: bool = False, dtype=np.float32):
        super().__init__()
        self.num_input_features, self.growth_rate, self.num_layers = num_input_features, growth_rate, num_layers
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate,
                                memory_efficient, dtype=dtype)
            setattr(self, f"denselayer{i + 1}", layer)

    def forward(self, x):
        n, c0, h, w = x.shape
        if c0 != self.num_input_features:
            raise ValueError(f"dense block expects {self.num_input_features} input channels, got shape {x.shape}")
        g = self.growth_rate
        buf = np.empty((n, c0 + self.num_layers * g, h, w), dtype=x.dtype)  # the whole block's output
        buf[:, :c0] = x
        for i, layer in enumerate(self._modules.values()):
            ci = c0 + i * g
            buf[:, ci:ci + g] = layer(buf[:, :ci])  # reads a view of x₀..x_{i−1}, writes x_i in place
        return buf

    def backward(self, grad_output):
        # out = [x₀, x₁, ..., x_ℓ] with x_i = f_i([x₀..x_{i−1}]). Channel block x_j (j ≥ 1) reaches
        # the loss through the output directly and through every later layer i > j, so
        #   dx_j = dout[x_j] + Σ_{i>j} (∂f_i/∂x_j)ᵀ dx_i.
        # Visiting i = ℓ..1: when layer i is reached every later layer has already added its
        # contribution, so grad[:, Cᵢ:Cᵢ+g] is the complete dx_i; layer i's backward turns it into
        # the gradient of its whole input, added in place into grad[:, :Cᵢ] (N, Cᵢ, H, W).
        # The concatenation's own backward is the slicing: no copy, one buffer.
        grad = np.array(grad_output, copy=True)  # (N, C, H, W), ours to accumulate into
        c0, g = self.num_input_features, self.growth_rate
        for i in reversed(range(self.num_layers)):
            ci = c0 + i * g
            layer = self._modules[f"denselayer{i + 1}"]
            grad[:, :ci] += layer.backward(grad[:, ci:ci + g])
        return grad[:, :c0]


class _Transition(_Named):
    """BN-ReLU-Conv1×1-AvgPool2×2 between blocks. Twin: ``torch_ref.densenet._Transition``.

    Shape: (N, C, H, W) -> (N, C_out, ⌊H/2⌋, ⌊W/2⌋). Keys ``norm``, ``conv`` (torchvision's).
    """

    def __init__(self, num_input_features: int, num_output_features: int, dtype=np.float32):
        super().__init__(
            ("norm", BatchNorm2d(num_input_features, dtype=dtype)),
            ("relu", ReLU()),
            ("conv", Conv2d(num_input_features, num_output_features, 1, bias=False, dtype=dtype)),
            ("pool", AvgPool2d(2, stride=2)),
        )


class DenseNet(Module):
    """Densely connected convolutional network, torchvision's ``DenseNet`` (BC variant).

    Args (torchvision's, same defaults: DenseNet-121):
        growth_rate: g, channels each dense layer adds (32).
        block_config: layers per dense block ((6, 12, 24, 16)).
        num_init_features: channels of the stem convolution (64).
        bn_size: bottleneck width factor, B = bn_size·g channels after conv1 (4).
        drop_rate: dropout after every dense layer (0.0).
        num_classes: outputs of ``classifier`` (1000).
        memory_efficient: accepted and stored for torchvision's signature. torchvision checkpoints
            the concatenation + norm1 + conv1 to recompute them in backward; the shared block buffer
            here removes the concatenation copies, and no recomputation is done (same numbers
            either way; see the module docstring).
        in_channels: image channels (3; an addition, torchvision hard-codes 3).
        dtype: parameter dtype.

    Init (torchvision's): every conv kaiming_normal_ (fan_in, gain √2), BatchNorm γ = 1, β = 0,
    classifier weight torch's Linear default, bias 0.

    Shape: (N, in_channels, H, W) -> (N, num_classes); H, W ≥ ``min_input_size(len(block_config))``.

    ``backward`` returns dL/dx, or None when ``features.conv0.needs_input_grad`` is False.

    state_dict keys: ``features.conv0.weight``, ``features.norm0.*``,
    ``features.denseblock{b}.denselayer{i}.{norm1,conv1,norm2,conv2}.*``,
    ``features.transition{b}.{norm,conv}.*``, ``features.norm5.*``, ``classifier.{weight,bias}``.
    ``load_state_dict`` also accepts torchvision's legacy names (``norm.1`` ...; ``remap_legacy_keys``)
    and old checkpoints without ``num_batches_tracked`` (taken as 0, as torch's BatchNorm does).
    """

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000, memory_efficient: bool = False,
                 in_channels: int = 3, dtype=np.float32):
        super().__init__()
        self.in_channels, self.memory_efficient = in_channels, memory_efficient
        self.block_config = tuple(int(b) for b in block_config)
        feats = [
            ("conv0", Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False, dtype=dtype)),
            ("norm0", BatchNorm2d(num_init_features, dtype=dtype)),
            ("relu0", ReLU()),
            ("pool0", MaxPool2d(3, stride=2, padding=1)),
        ]
        c = num_init_features
        for i, num_layers in enumerate(self.block_config):
            feats.append((f"denseblock{i + 1}", _DenseBlock(num_layers, c, bn_size, growth_rate, drop_rate,
                                                            memory_efficient, dtype=dtype)))
            c += num_layers * growth_rate
            if i != len(self.block_config) - 1:
                feats.append((f"transition{i + 1}", _Transition(c, c // 2, dtype=dtype)))
                c //= 2
        feats.append(("norm5", BatchNorm2d(c, dtype=dtype)))
        self.features = _Named(*feats)
        self.classifier = Linear(c, num_classes, dtype=dtype)
        self.num_features = c
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, Linear):
                init.zeros_(m.bias)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DenseNet expects input (N, {self.in_channels}, H, W), got shape {x.shape}")
        smallest = min_input_size(len(self.block_config))
        if min(x.shape[2:]) < smallest:
            raise ValueError(f"DenseNet with {len(self.block_config)} blocks needs images of at least "
                             f"{smallest}×{smallest}, got {x.shape[2]}×{x.shape[3]}")
        f = self.features(x)  # (N, C, h, w)
        self._relu_mask = f > 0  # F.relu
        self._hw = f.shape[2:]
        pooled = np.mean(np.maximum(f, 0, dtype=f.dtype), axis=(2, 3), dtype=f.dtype)  # adaptive_avg_pool2d(1) + flatten: (N, C)
        return self.classifier(pooled)

    def backward(self, grad_output):
        # logits = classifier(p),  p[n, c] = (1/(h·w)) Σ_{y,x} relu(f)[n, c, y, x]
        # dp = classifierᵀ dlogits (N, C);  d relu(f) = dp / (h·w) broadcast over h×w;
        # df = d relu(f) · [f > 0]  (N, C, h, w)
        dp = self.classifier.backward(grad_output)
        h, w = self._hw
        df = (dp * dp.dtype.type(1.0 / (h * w)))[:, :, None, None] * self._relu_mask
        return self.features.backward(df)

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """``Module.load_state_dict`` after ``remap_legacy_keys`` (torchvision's ``_load_state_dict``)."""
        state = remap_legacy_keys(state_dict)
        for key in self.state_dict():  # checkpoints older than torch 0.4.1 lack the counter
            if key.endswith("num_batches_tracked") and key not in state and key[: -len("num_batches_tracked")] + "running_mean" in state:
                state[key] = np.array(0, dtype=np.int64)
        super().load_state_dict(state, strict=strict)

    def extra_repr(self):
        return f"block_config={self.block_config}, num_features={self.num_features}"


# torchvision's own pattern: '.'s are no longer allowed in module names, but old _DenseLayer
# checkpoints (those behind torchvision's URLs included) have keys 'norm.1', 'conv.2', ...
_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def remap_legacy_keys(state_dict: dict) -> dict:
    """A new dict (same order, same values) with ``...denselayerK.norm.1.weight`` renamed
    ``...denselayerK.norm1.weight``, exactly as torchvision's ``_load_state_dict`` renames them."""
    out = {}
    for key, value in state_dict.items():
        m = _LEGACY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def min_input_size(num_blocks: int) -> int:
    """The smallest square image whose features stay ≥ 1×1: the stem halves twice (conv0, pool0:
    s → ⌊(s−1)/2⌋+1 each), every transition halves again (⌊s/2⌋)."""
    s = 1
    while True:
        t = (s - 1) // 2 + 1
        t = (t - 1) // 2 + 1
        for _ in range(num_blocks - 1):
            t //= 2
        if t >= 1:
            return s
        s += 1


def concat_copy_ratio(num_input_features: int, num_layers: int, growth_rate: int) -> float:
    """Channel maps copied by concatenating afresh for every layer, Σᵢ Cᵢ (plus the block's final
    C), over the C the shared buffer writes: (ℓ·C₀ + g·ℓ(ℓ−1)/2 + C) / C."""
    c = num_input_features + num_layers * growth_rate
    copied = num_layers * num_input_features + growth_rate * num_layers * (num_layers - 1) // 2 + c
    return copied / c


def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121: g = 32, blocks (6, 12, 24, 16), 64 stem channels, bn_size 4 (torchvision's)."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)
