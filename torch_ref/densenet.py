"""DenseNet in plain ``torch.nn``: torchvision's architecture, keys and init, no torchvision import.

Twin: ``numpy_nn/densenet.py`` (see its docstring for the network and the shape letters). The
keys, their order and shapes are torchvision's ``densenet121``'s, so its ImageNet checkpoint
(``IMAGENET_URL``) loads unchanged, legacy ``norm.1``-style names included.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from numpy_nn.densenet import min_input_size, remap_legacy_keys

__all__ = ["DenseNet", "densenet121", "IMAGENET_URL", "load_imagenet_state"]

# torchvision's DenseNet121_Weights.IMAGENET1K_V1 (acc@1 74.434 on ImageNet-1k)
IMAGENET_URL = "https://download.pytorch.org/models/densenet121-a639ec97.pth"


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1(B)-BN-ReLU-Conv3×3(g) [→ dropout]. Twin: ``numpy_nn.densenet._DenseLayer``.

    Takes the list of earlier feature maps and concatenates them (as torchvision); dropout is an
    ``nn.Dropout`` module (stateless, no keys) so ``torch_ref.layers.use_numpy_masks`` can share
    NumPy's masks with it.
    """

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features, dtype=dtype)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False, dtype=dtype)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate, dtype=dtype)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False, dtype=dtype)
        if drop_rate > 0:
            self.dropout = nn.Dropout(float(drop_rate))
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs):  # torchvision's recomputation
            bottleneck = cp.checkpoint(lambda *ts: self.bn_function(list(ts)), *inputs, use_reentrant=False)
        else:
            bottleneck = self.bn_function(inputs)
        new = self.conv2(self.relu2(self.norm2(bottleneck)))
        return self.dropout(new) if self.drop_rate > 0 else new


class _DenseBlock(nn.ModuleDict):
    """ℓ dense layers, each fed the concatenation of all earlier maps. Twin: ``numpy_nn.densenet._DenseBlock``."""

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float, memory_efficient: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate, growth_rate,
                                                               bn_size, drop_rate, memory_efficient, dtype=dtype))

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-Conv1×1-AvgPool2×2. Twin: ``numpy_nn.densenet._Transition``."""

    def __init__(self, num_input_features: int, num_output_features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False, dtype=dtype)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """torchvision's ``DenseNet``. Twin: ``numpy_nn.densenet.DenseNet`` (same arguments, defaults,
    init and keys; see its docstring). Shape: (N, in_channels, H, W) -> (N, num_classes)."""

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000, memory_efficient: bool = False,
                 in_channels: int = 3, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_channels, self.block_config = in_channels, tuple(int(b) for b in block_config)
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False, dtype=dtype)),
            ("norm0", nn.BatchNorm2d(num_init_features, dtype=dtype)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]))
        c = num_init_features
        for i, num_layers in enumerate(self.block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, c, bn_size, growth_rate, drop_rate,
                                                                       memory_efficient, dtype=dtype))
            c += num_layers * growth_rate
            if i != len(self.block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(c, c // 2, dtype=dtype))
                c //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(c, dtype=dtype))
        self.classifier = nn.Linear(c, num_classes, dtype=dtype)
        self.num_features = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smallest = min_input_size(len(self.block_config))
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[2:]) < smallest:
            raise ValueError(f"DenseNet expects input (N, {self.in_channels}, H, W) with H, W >= {smallest}, "
                             f"got shape {tuple(x.shape)}")
        out = F.relu(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` after torchvision's legacy-key remap (``remap_legacy_keys``)."""
        return super().load_state_dict(remap_legacy_keys(state_dict), strict=strict, assign=assign)


def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121: g = 32, blocks (6, 12, 24, 16), 64 stem channels, bn_size 4 (torchvision's)."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


def load_imagenet_state(model_dir: str | None = None) -> dict:
    """torchvision's ImageNet densenet121 weights via ``torch.hub.load_state_dict_from_url``
    (cached under torch.hub's directory), read with ``weights_only=True``, legacy keys renamed."""
    state = torch.hub.load_state_dict_from_url(IMAGENET_URL, model_dir=model_dir, progress=False,
                                               check_hash=True, weights_only=True)
    return remap_legacy_keys(state)
