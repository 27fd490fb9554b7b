"""One training step and the weight-decay parameter groups, with torch autograd.

Twin: ``numpy_nn/training.py`` — the same functions, names and line order; where numpy_nn calls
``criterion.backward()``, ``model.backward()`` and ``penalty_backward()``, autograd does it here.
"""

from __future__ import annotations

import torch
from torch import nn

from .regularization import penalty


def weights(model: nn.Module) -> list:
    """The parameters with more than one dimension (Linear / Conv weights), not biases or norms."""
    return [p for p in model.parameters() if len(p.shape) > 1]


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """torch-style param groups: ``weight_decay`` on the weights (ndim > 1), 0 on the rest.

    Group 0 holds the weights, group 1 everything else (possibly empty).
    Twin: ``numpy_nn.training.weight_decay_groups``.
    """
    decayed = weights(model)
    chosen = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def train_step(model: nn.Module, criterion, optimizer, x: torch.Tensor, y: torch.Tensor,
               l1: float = 0.0, l2: float = 0.0, reg_params: list | None = None) -> tuple[float, float]:
    """zero_grad → forward → loss (+ L1/L2 penalty) → backward → optimizer step.

    Twin: ``numpy_nn.training.train_step`` (same arguments; tensors instead of arrays).

    Returns:
        (data_loss, reg_loss) as floats; the optimised objective is their sum.
    """
    if reg_params is None:
        reg_params = weights(model)
    optimizer.zero_grad()
    logits = model(x)
    data_loss = criterion(logits, y.reshape(logits.shape))  # (N, K); (N,) targets -> (N, 1)
    reg_loss = penalty(reg_params, l1, l2)
    # backward of data_loss + reg_loss: autograd sends the gradients of both terms into .grad.
    (data_loss + reg_loss).backward()
    optimizer.step()
    return data_loss.item(), reg_loss.item()
