"""Label-smoothed BCE on logits for torch. Twin: ``numpy_nn/losses.py``.

torch has ``MSELoss`` and ``CrossEntropyLoss(label_smoothing=...)`` already (use them as they are);
its ``BCEWithLogitsLoss`` lacks label smoothing, which this module adds with the very formula
numpy_nn uses: t' = t·(1 − ε) + ε/2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def smooth_binary_targets(target: torch.Tensor, eps: float) -> torch.Tensor:
    """t' = t·(1 − ε) + ε/2 (1 → 1 − ε/2, 0 → ε/2). Twin: ``numpy_nn.losses.smooth_binary_targets``."""
    if eps == 0.0:
        return target
    return target * (1.0 - eps) + eps / 2


def _optional_tensor(value) -> torch.Tensor | None:
    if value is None or isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, dtype=torch.float64)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` plus label smoothing. Twin: ``numpy_nn.losses.BCEWithLogitsLoss``.

    ℓ = −w · [p·t'·log σ(x) + (1 − t')·log(1 − σ(x))],  t' = t·(1 − ε) + ε/2, p = pos_weight.

    Args:
        pos_weight: weight of positives (scalar or (C,), broadcast over the last dim).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε ∈ [0, 1] (default 0: plain torch behaviour).
        weight: (keyword only) rescaling weight broadcast against the loss.

    Shape: input (N, *) logits; target the same shape; output a scalar, or (N, *) for "none".
    ``pos_weight`` / ``weight`` are cast to the input's dtype at each call.
    """

    def __init__(self, pos_weight=None, reduction: str = "mean", label_smoothing: float = 0.0, *, weight=None):
        super().__init__(weight=_optional_tensor(weight), reduction=reduction, pos_weight=_optional_tensor(pos_weight))
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cast = lambda t: None if t is None else t.to(input.dtype)  # noqa: E731
        target = smooth_binary_targets(target.to(input.dtype), self.label_smoothing)
        return F.binary_cross_entropy_with_logits(
            input, target, cast(self.weight), pos_weight=cast(self.pos_weight), reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
