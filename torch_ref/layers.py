"""Dropout whose masks come from NumPy, so both tracks drop the same units.

Twin: ``numpy_nn.layers.Dropout``. ``torch.nn.Dropout`` draws from torch's RNG, which numpy_nn
cannot reproduce; for parity tests and lockstep runs ``use_numpy_masks`` swaps every
``nn.Dropout`` of a model for ``NumpyMaskDropout``, which draws its masks with the very function
numpy_nn uses (``numpy_nn.layers.dropout_mask``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from numpy_nn.layers import dropout_mask


class NumpyMaskDropout(nn.Module):
    """Inverted dropout, y = x · m / (1 − p), with m drawn by ``dropout_mask(generator, ...)``."""

    def __init__(self, p: float, generator: np.random.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.from_numpy(dropout_mask(self.generator, tuple(x.shape), self.p)).to(x.device)
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        return x * (keep.to(x.dtype) * scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_numpy_masks(model: nn.Module, generator: np.random.Generator) -> nn.Module:
    """Replace every ``nn.Dropout`` in ``model`` by a ``NumpyMaskDropout`` sharing ``generator``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Dropout):
            setattr(model, name, NumpyMaskDropout(child.p, generator))
        else:
            use_numpy_masks(child, generator)
    return model
