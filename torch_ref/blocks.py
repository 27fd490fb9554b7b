"""PyTorch mirrors of ``numpy_nn/blocks.py``: same classes, arguments, attribute names, state_dict keys."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """y = ReLU(BN(conv3x3(ReLU(BN(conv3x3_stride(x))))) + shortcut(x)).

    Twin: ``numpy_nn.blocks.ResidualBlock`` (see its docstring). ``shortcut`` is ``nn.Identity``
    when the shape is kept, else ``nn.Sequential(Conv2d 1×1 stride, no bias; BatchNorm2d)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(out_channels, dtype=dtype)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype),
                nn.BatchNorm2d(out_channels, dtype=dtype),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(main + self.shortcut(x))
