"""PyTorch mirrors of ``numpy_nn/models.py``: same classes, arguments, state_dict keys, shapes."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


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
