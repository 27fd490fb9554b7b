"""PyTorch mirrors of ``numpy_nn/models.py``: same classes, arguments, state_dict keys, shapes."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import ResidualBlock


class MLP(nn.Module):
    """CheXVision-mini in torch. Twin: ``numpy_nn.models.MLP`` (see its docstring).

    Linear → ReLU → Dropout per hidden layer, then a Linear head; He-normal weights, zero biases.
    Shape: (N, in_features) or (N, 1, H, W) -> (N, out_features).
    """

    def __init__(
        self,
        in_features: int = 4096,
        hidden: Sequence[int] = (1024, 256, 64),
        out_features: int = 1,
        dropout: float = 0.3,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.in_features = in_features
        mods: list[nn.Module] = []
        width = in_features
        for h in hidden:
            mods += [nn.Linear(width, h, dtype=dtype), nn.ReLU()]
            if dropout > 0:
                mods.append(nn.Dropout(dropout))
            width = h
        mods.append(nn.Linear(width, out_features, dtype=dtype))
        self.layers = nn.Sequential(*mods)
        for m in self.layers:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(x.shape[0], -1))


class CNN(nn.Module):
    """CheXVision-conv in torch. Twin: ``numpy_nn.models.CNN`` (see its docstring).

    Stem Conv2d(3, stride 2) → BN → ReLU; per middle width Conv2d(3) → BN → ReLU → MaxPool2d(2);
    ResidualBlock(stride 2); AdaptiveAvgPool2d(1) → Dropout (Identity for p = 0) → Linear head.
    Convolutions kaiming_normal_(fan_out, relu). Shape: (N, in_channels, H, W) -> (N, out_features).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        dropout: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        channels = tuple(channels)
        if len(channels) < 2:
            raise ValueError(f"CNN needs at least two stage widths (stem, residual stage), got channels={channels}")
        self.in_channels = in_channels
        mods: list[nn.Module] = [
            nn.Conv2d(in_channels, channels[0], 3, stride=2, padding=1, bias=False, dtype=dtype),
            nn.BatchNorm2d(channels[0], dtype=dtype),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(channels[:-2], channels[1:-1]):
            mods += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, dtype=dtype),
                nn.BatchNorm2d(c_out, dtype=dtype),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        mods.append(ResidualBlock(channels[-2], channels[-1], stride=2, dtype=dtype))
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels[-1], out_features, dtype=dtype)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x))  # (N, C, H, W) -> (N, C_last, 1, 1)
        return self.head(self.dropout(h.flatten(1)))


from .densenet import DenseNet, densenet121  # noqa: E402,F401  (torchvision's DenseNet; its own module)
