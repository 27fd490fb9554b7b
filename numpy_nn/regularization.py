"""L1 / L2 penalties on parameters: value and hand-written gradient.

Twin: ``torch_ref/regularization.py`` (where autograd supplies the gradient).

    penalty = l1·Σ|w| + l2·Σw²        over the given parameters

The app offers these beside the optimizer's weight decay and applies them to the weights only
(it passes that list). Use::

    loss = crit(logits, y) + penalty(weights, l1, l2)
    model.backward(crit.backward())
    penalty_backward(weights, l1, l2)      # adds the penalty's gradient into each .grad
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .module import Parameter


def _check(l1: float, l2: float) -> None:
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty strengths must be >= 0, got l1={l1}, l2={l2}")


def penalty(parameters: Iterable[Parameter], l1: float = 0.0, l2: float = 0.0) -> float:
    """l1·Σ|w| + l2·Σw² as a Python float (each sum taken in the parameter's dtype).

    Twin: ``torch_ref.regularization.penalty``. An empty list or l1 = l2 = 0 gives 0.0.
    """
    _check(l1, l2)
    total = 0.0
    for p in parameters:
        w = p.data
        if l1:
            total += l1 * float(np.abs(w).sum())
        if l2:
            total += l2 * float((w * w).sum())
    return total


def penalty_backward(parameters: Iterable[Parameter], l1: float = 0.0, l2: float = 0.0) -> None:
    """Add d penalty / dw = l1·sign(w) + 2·l2·w into each parameter's ``.grad``.

    At the kink w = 0 of |w| the L1 term contributes 0 (sign(0) = 0, as torch's ``abs`` backward),
    so an exactly-zero weight is not pushed either way. With l1 = l2 = 0 nothing is touched (no
    ``.grad`` is created).
    """
    # P = l1·Σ|w| + l2·Σw²   =>   ∂P/∂w = l1·sign(w) + 2·l2·w     (elementwise, shape of w)
    _check(l1, l2)
    if not (l1 or l2):
        return
    for p in parameters:
        w = p.data
        g = np.zeros_like(w)
        if l1:
            g += w.dtype.type(l1) * np.sign(w)
        if l2:
            g += w.dtype.type(2 * l2) * w
        p.accumulate_grad(g)
