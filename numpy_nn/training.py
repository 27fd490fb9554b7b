"""One training step and the weight-decay parameter groups, written by hand.

Twin: ``torch_ref/training.py`` — the same functions, names and line order, with autograd in
place of the explicit backward calls. Read them side by side.
"""

from __future__ import annotations

import numpy as np

from .module import Module
from .regularization import penalty, penalty_backward


def weights(model: Module) -> list:
    """The parameters with more than one dimension (Linear / Conv weights), not biases or norms."""
    return [p for p in model.parameters() if len(p.shape) > 1]


def weight_decay_groups(model: Module, weight_decay: float) -> list[dict]:
    """torch-style param groups: ``weight_decay`` on the weights (ndim > 1), 0 on the rest.

    Decaying biases and BatchNorm scales towards 0 only hurts; the weights are what L2 / decay
    should shrink. Group 0 holds the weights, group 1 everything else (possibly empty).

    Example:
        >>> opt = Adam(weight_decay_groups(model, 1e-4), lr=1e-3)
    """
    decayed = weights(model)
    chosen = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def train_step(model: Module, criterion, optimizer, x: np.ndarray, y: np.ndarray,
               l1: float = 0.0, l2: float = 0.0, reg_params: list | None = None) -> tuple[float, float]:
    """zero_grad → forward → loss (+ L1/L2 penalty) → backward → optimizer step.

    Args:
        model: a numpy_nn model producing K logits per example, (N, K) (K = 1: one output).
        criterion: e.g. ``BCEWithLogitsLoss``; called on the logits and the targets reshaped to
            the logits' shape, so a per-output ``pos_weight`` (K,) broadcasts over the last dim.
        optimizer: any ``numpy_nn.optim`` optimizer over the model's parameters.
        x: a batch of inputs, (N, ...).
        y: targets, (N, K), or (N,) when K = 1.
        l1, l2: strengths of the penalty l1·Σ|w| + l2·Σw² (added to the loss, not the decay).
        reg_params: parameters the penalty applies to (default: the weights, ``weights(model)``).

    Returns:
        (data_loss, reg_loss) as floats; the optimised objective is their sum.
    """
    if reg_params is None:
        reg_params = weights(model)
    optimizer.zero_grad()
    logits = model(x)
    data_loss = criterion(logits, y.reshape(logits.shape))  # (N, K); (N,) targets -> (N, 1)
    reg_loss = penalty(reg_params, l1, l2)
    # backward of data_loss + reg_loss: the criterion's gradient through the model, then the
    # penalty's gradient into the same .grad arrays (gradients add).
    model.backward(criterion.backward())  # d loss / d logits, (N, K)
    penalty_backward(reg_params, l1, l2)
    optimizer.step()
    return float(data_loss), float(reg_loss)
