"""Networks built from numpy_nn layers. Twin: ``torch_ref/models.py`` (same classes, arguments,
``state_dict`` keys and shapes)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import init
from .layers import Dropout, Linear, ReLU
from .module import Module, Sequential


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
        return self.layers.backward(grad_output).reshape(self._in_shape)
