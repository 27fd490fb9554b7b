"""Composite blocks built from numpy_nn layers; their backward only routes gradients between pieces.

Twin: ``torch_ref/blocks.py`` (same classes, arguments and attribute names, so ``state_dict``
keys match).
"""

from __future__ import annotations

import numpy as np

from .conv import Conv2d
from .layers import ReLU
from .module import Identity, Module, Sequential
from .norm import BatchNorm2d


class ResidualBlock(Module):
    """The basic residual block of ResNet-18/34 (He et al., 2016):

        y = ReLU( BN(conv3x3(ReLU(BN(conv3x3_stride(x))))) + shortcut(x) )

    ``shortcut`` is the identity when the shape is kept, else a 1×1 convolution with the same
    stride (no bias) followed by BatchNorm, projecting x to the new channels and size.
    Convolutions carry no bias: the BatchNorm after each would cancel it.

    Twin: ``torch_ref.blocks.ResidualBlock``.

    Args:
        in_channels, out_channels: C_in and C_out.
        stride: stride of the first 3×3 convolution (and of the projection), 2 halves H and W.
        dtype: parameter dtype.

    Shape: (N, C_in, H, W) -> (N, C_out, Ho, Wo), Ho = floor((H − 1) / stride) + 1, likewise Wo.

    Attributes (``state_dict`` prefixes): ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, when projecting,
    ``shortcut.0`` (Conv2d 1×1) and ``shortcut.1`` (BatchNorm2d); ``relu1``/``relu2`` hold no state.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dtype=np.float32):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False, dtype=dtype)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
            )
        else:
            self.shortcut = Identity()
        self.relu2 = ReLU()

    def forward(self, x):
        main = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        main += self.shortcut(x)  # in place: main is this block's own fresh array
        return self.relu2(main)

    def backward(self, grad_output):
        # y = ReLU(s),  s = F(x) + G(x)  (F the conv-BN-ReLU-conv-BN branch, G the shortcut)
        # ds = ReLU'(s) dy;  ds/dF = ds/dG = 1, so both branches receive ds unchanged and
        # x, used by both, collects the sum: dx = F'(x)ᵀ ds + G'(x)ᵀ ds.
        # The shortcut goes first, as torch's autograd runs it (the later-built branch first), so
        # backward hooks fire in torch's order.
        ds = self.relu2.backward(grad_output)
        dx_shortcut = self.shortcut.backward(ds)
        g = self.bn2.backward(ds)
        g = self.conv2.backward(g)
        g = self.relu1.backward(g)
        g = self.bn1.backward(g)
        dx = self.conv1.backward(g)
        return dx + dx_shortcut
