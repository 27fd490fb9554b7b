"""Networks built from numpy_nn layers. Twin: ``torch_ref/models.py`` (same classes, arguments,
``state_dict`` keys and shapes)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import init
from .blocks import ResidualBlock
from .conv import Conv2d
from .layers import Dropout, Linear, ReLU
from .module import Identity, Module, Sequential
from .norm import BatchNorm2d
from .pooling import AdaptiveAvgPool2d, MaxPool2d


class MLP(Module):
    """CheXVision-mini: Linear → ReLU → Dropout per hidden layer, then a Linear head.

    Args:
        in_features: flattened input size (64·64 = 4096 for 64×64 images).
        hidden: widths of the hidden layers.
        out_features: 1 for one abnormality logit.
        dropout: p of the Dropout after each hidden ReLU (0 disables it: no Dropout module).
        dtype: parameter dtype.

    Init: He (kaiming_normal_, fan_in, relu gain √2) for every weight, zeros for biases.

    Shape: (N, in_features) or (N, 1, H, W) with H·W = in_features -> (N, out_features).

    state_dict keys: ``layers.{i}.weight`` / ``layers.{i}.bias`` for each Linear at index i
    of ``layers`` (for hidden=(1024, 256, 64), dropout>0: i = 0, 3, 6, 9).
    """

    def __init__(
        self,
        in_features: int = 4096,
        hidden: Sequence[int] = (1024, 256, 64),
        out_features: int = 1,
        dropout: float = 0.3,
        dtype=np.float32,
    ):
        super().__init__()
        self.in_features = in_features
        mods: list[Module] = []
        width = in_features
        for h in hidden:
            mods += [Linear(width, h, dtype=dtype), ReLU()]
            if dropout > 0:
                mods.append(Dropout(dropout))
            width = h
        mods.append(Linear(width, out_features, dtype=dtype))
        self.layers = Sequential(*mods)
        for m in self.layers:
            if isinstance(m, Linear):
                init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                init.zeros_(m.bias)

    def forward(self, x):
        self._in_shape = x.shape
        return self.layers(x.reshape(x.shape[0], -1))  # (N, ...) -> (N, in_features)

    def backward(self, grad_output):
        grad_input = self.layers.backward(grad_output)  # None if layers[0].needs_input_grad is False
        return None if grad_input is None else grad_input.reshape(self._in_shape)


class CNN(Module):
    """CheXVision-conv: a small ResNet-style network for 64×64 single-channel images.

    Layers, for ``channels=(16, 32, 64)`` and a 64×64 input (the sizes in brackets):

    * stem: Conv2d(in, 16, 3, stride 2, pad 1) → BatchNorm2d → ReLU              [16 × 32 × 32]
    * one stage per middle width: Conv2d(3, pad 1) → BatchNorm2d → ReLU → MaxPool2d(2)
                                                                                   [32 × 16 × 16]
    * ResidualBlock(32, 64, stride 2) (projection shortcut)                        [64 × 8 × 8]
    * AdaptiveAvgPool2d(1) → Dropout(p) (omitted for p = 0) → Linear(64, out)      [out]

    The stride-2 stem and the pooling shrink the image early, where convolutions are cheapest to
    skip, so a NumPy epoch over 10,000 images stays well under a minute on two cores.

    Args:
        in_channels: image channels (1 for grayscale X-rays).
        out_features: 1 for one abnormality logit.
        channels: stage widths, at least two: stem, middle stages, residual stage.
        dropout: p of the Dropout before the head (0: an Identity instead).
        dtype: parameter dtype.

    Init: convolutions kaiming_normal_(mode="fan_out", nonlinearity="relu") (as torchvision's
    ResNet), BatchNorm γ = 1, β = 0, the head torch's Linear default.

    ``backward`` returns dL/dx, or None when ``features[0].needs_input_grad`` is False (the stem
    convolution then skips its input gradient, as a first ``Linear`` does in the MLP).

    Shape: (N, in_channels, H, W) -> (N, out_features); any H, W ≥ 16 (each of the
    len(channels) stages halves the size, rounding up for the strided convolutions).

    state_dict keys: ``features.0.weight`` (stem conv), ``features.1.*`` (its BatchNorm),
    ``features.{3+4i}.weight`` / ``features.{4+4i}.*`` for middle stage i, then
    ``features.{k}.conv1.weight``, ``.bn1.*``, ``.conv2.weight``, ``.bn2.*``, ``.shortcut.0.weight``,
    ``.shortcut.1.*`` for the residual block, and ``head.weight`` / ``head.bias``.
    Twin: ``torch_ref.models.CNN``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        dropout: float = 0.0,
        dtype=np.float32,
    ):
        super().__init__()
        channels = tuple(channels)
        if len(channels) < 2:
            raise ValueError(f"CNN needs at least two stage widths (stem, residual stage), got channels={channels}")
        self.in_channels = in_channels
        mods: list[Module] = [
            Conv2d(in_channels, channels[0], 3, stride=2, padding=1, bias=False, dtype=dtype),
            BatchNorm2d(channels[0], dtype=dtype),
            ReLU(),
        ]
        for c_in, c_out in zip(channels[:-2], channels[1:-1]):
            mods += [
                Conv2d(c_in, c_out, 3, padding=1, bias=False, dtype=dtype),
                BatchNorm2d(c_out, dtype=dtype),
                ReLU(),
                MaxPool2d(2),
            ]
        mods.append(ResidualBlock(channels[-2], channels[-1], stride=2, dtype=dtype))
        self.features = Sequential(*mods)
        self.pool = AdaptiveAvgPool2d(1)
        self.dropout = Dropout(dropout) if dropout > 0 else Identity()
        self.head = Linear(channels[-1], out_features, dtype=dtype)
        for m in self.features.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"CNN expects input (N, {self.in_channels}, H, W), got shape {x.shape}")
        h = self.pool(self.features(x))  # (N, C, H, W) -> (N, C_last, 1, 1)
        self._pooled_shape = h.shape
        h = self.dropout(h.reshape(h.shape[0], -1))  # (N, C_last, 1, 1) -> (N, C_last)
        return self.head(h)

    def backward(self, grad_output):
        g = self.dropout.backward(self.head.backward(grad_output))
        g = self.pool.backward(g.reshape(self._pooled_shape))  # (N, C_last) -> (N, C_last, 1, 1)
        return self.features.backward(g)


from .densenet import DenseNet, densenet121  # noqa: E402,F401  (torchvision's DenseNet; its own module)
