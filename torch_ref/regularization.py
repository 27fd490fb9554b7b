"""L1 / L2 penalties added to the loss. Twin: ``numpy_nn/regularization.py``.

penalty = l1·Σ|w| + l2·Σw² over the given parameters (the app passes the weights only, beside or
instead of the optimizer's weight decay); autograd supplies the gradient l1·sign(w) + 2·l2·w.
"""

from __future__ import annotations

from typing import Iterable

import torch


def penalty(parameters: Iterable[torch.Tensor], l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """l1·Σ|w| + l2·Σw², a 0-d tensor to add to the loss before ``backward()``.

    Twin: ``numpy_nn.regularization.penalty`` (which returns a float and has a
    ``penalty_backward``). An empty list or l1 = l2 = 0 gives a zero tensor with no graph.
    """
    if l1 < 0 or l2 < 0:
        raise ValueError(f"penalty strengths must be >= 0, got l1={l1}, l2={l2}")
    params = list(parameters)
    total = None
    for p in params:
        term = None
        if l1:
            term = l1 * p.abs().sum()
        if l2:
            sq = l2 * p.pow(2).sum()
            term = sq if term is None else term + sq
        if term is not None:
            total = term if total is None else total + term
    if total is None:
        dtype = params[0].dtype if params else torch.get_default_dtype()
        return torch.zeros((), dtype=dtype)
    return total
