"""Loss functions with their gradients written by hand: BCE on logits, MSE, cross-entropy.

Twins: ``torch.nn.BCEWithLogitsLoss`` (plus label smoothing: ``torch_ref.losses.BCEWithLogitsLoss``),
``torch.nn.MSELoss``, ``torch.nn.CrossEntropyLoss``.

Usage mirrors torch, except that the backward is called on the criterion::

    crit = BCEWithLogitsLoss(pos_weight=2.0)
    loss = crit(logits, target)          # a Python float ("mean" / "sum")
    grad_logits = crit.backward()        # d loss / d logits, shape and dtype of logits
    model.backward(grad_logits)

``backward(grad_output)`` takes the upstream gradient of the loss (default 1.0 for a scalar loss;
required, shaped like the loss, for ``reduction="none"``). Every loss computes in the logits'
dtype and returns gradients of that dtype.

Shape letters: N batch, C classes (or outputs), * any further dims.
"""

from __future__ import annotations

import numpy as np

from .layers import sigmoid
from .module import Module

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction; choose from {', '.join(_REDUCTIONS)}")
    return reduction


def _check_smoothing(eps: float) -> float:
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
    return float(eps)


def _as_float_array(x, dtype) -> np.ndarray:
    """A float array of ``dtype`` (a scalar becomes a 0-d array)."""
    return np.asarray(x, dtype=dtype)


def softplus(x: np.ndarray) -> np.ndarray:
    """softplus(x) = log(1 + e^x), stable for any x: max(x, 0) + log1p(e^{−|x|}).

    The exponent −|x| is never positive, so e^{−|x|} ∈ (0, 1] cannot overflow; for x = 1e4 the
    result is exactly 1e4 (torch's ``F.softplus`` agrees).
    """
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(x) = x − logΣexp(x), via log-sum-exp: subtracting max(x) keeps every exponent ≤ 0
    (no overflow) and at least one term equal to 1 (no log 0). Twin: ``torch.log_softmax``."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def smooth_binary_targets(target: np.ndarray, eps: float) -> np.ndarray:
    """Label smoothing for binary targets: t' = t·(1 − ε) + ε/2 (1 → 1 − ε/2, 0 → ε/2).

    Twin: ``torch_ref.losses.smooth_binary_targets``. ε = 0 returns ``target`` unchanged.
    """
    if eps == 0.0:
        return target
    return target * target.dtype.type(1.0 - eps) + target.dtype.type(eps / 2)


class _Loss(Module):
    """Base of the criteria: ``crit(input, target)`` then ``crit.backward(grad_output=None)``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def __call__(self, input: np.ndarray, target: np.ndarray):
        return self.forward(input, target)

    def forward(self, input, target):
        raise NotImplementedError

    def _reduce(self, loss: np.ndarray, denominator=None):
        """Per-element loss -> float ("mean", "sum") or the array ("none")."""
        if self.reduction == "none":
            return loss
        total = loss.sum()
        if self.reduction == "mean":
            total = total / (loss.size if denominator is None else denominator)
        return float(total)

    def _upstream(self, grad_output, loss_shape: tuple[int, ...], dtype) -> np.ndarray:
        """The upstream gradient as an array broadcastable against the per-element loss."""
        if grad_output is None:
            if self.reduction == "none":
                raise ValueError(
                    "backward() of a loss with reduction='none' needs grad_output shaped like the loss "
                    "(torch: 'grad can be implicitly created only for scalar outputs')"
                )
            return np.asarray(1.0, dtype=dtype)
        g = np.asarray(grad_output, dtype=dtype)
        expected = loss_shape if self.reduction == "none" else ()
        if g.shape != expected:
            raise ValueError(f"grad_output of shape {g.shape}, expected {expected} for reduction={self.reduction!r}")
        return g

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, with positive-class weight and label smoothing.

    Twin: ``torch.nn.BCEWithLogitsLoss`` (``torch_ref.losses.BCEWithLogitsLoss`` adds the
    smoothing). With x the logit, t the target, t' = t·(1 − ε) + ε/2 the smoothed target,
    p = pos_weight and w = weight, the per-element loss is

        ℓ = −w · [p·t'·log σ(x) + (1 − t')·log(1 − σ(x))]
          = w · [(1 − t')·x + (1 + (p − 1)·t')·softplus(−x)]

    using log σ(x) = −softplus(−x) and log(1 − σ(x)) = −x − softplus(−x). The second form never
    takes the log of a probability, so logits of ±1e4 give finite losses and gradients.

    Args:
        pos_weight: weight of positive examples, broadcast over the last dim (a scalar or (C,));
            ``n_negative / n_positive`` balances classes. Default 1.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε ∈ [0, 1]; 0 (default) leaves targets unchanged.
        weight: (keyword only, as torch's first argument) a rescaling weight broadcast against
            the loss; default 1.

    Shape: input (N, *) logits; target same shape, values in [0, 1]; output a float, or (N, *)
    for ``reduction="none"``.

    Example:
        >>> crit = BCEWithLogitsLoss(pos_weight=3.0, label_smoothing=0.1)
        >>> round(crit(np.array([[0.5], [-1.0]]), np.array([[1.0], [0.0]])), 4)
        0.9472
    """

    def __init__(self, pos_weight=None, reduction: str = "mean", label_smoothing: float = 0.0, *, weight=None):
        super().__init__(reduction)
        self.label_smoothing = _check_smoothing(label_smoothing)
        # Buffers, as in torch (saved in state_dict only when given); cast to the logits' dtype
        # at every call so one criterion serves float32 and float64.
        self.pos_weight = None
        self.weight = None
        if pos_weight is not None:
            self.register_buffer("pos_weight", np.array(pos_weight, dtype=np.float64))
        if weight is not None:
            self.register_buffer("weight", np.array(weight, dtype=np.float64))

    def forward(self, input, target):
        x = np.asarray(input)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"BCEWithLogitsLoss: logits must be floating point, got {x.dtype}")
        if np.shape(target) != x.shape:
            raise ValueError(
                f"Target size ({np.shape(target)}) must be the same as input size ({x.shape})"
            )
        dt = x.dtype
        t = smooth_binary_targets(_as_float_array(target, dt), self.label_smoothing)
        # log_weight = 1 + (p − 1)·t' multiplies softplus(−x); p·t' is the gradient's offset.
        if self.pos_weight is not None:
            p = _as_float_array(self.pos_weight, dt)
            log_weight, pt = 1 + (p - 1) * t, p * t
        else:
            log_weight, pt = np.ones((), dt), t
        loss = (1 - t) * x + log_weight * softplus(-x)
        w = None if self.weight is None else _as_float_array(self.weight, dt)
        if w is not None:
            loss = loss * w
        if loss.shape != x.shape:
            raise ValueError(f"BCEWithLogitsLoss: weight / pos_weight broadcast the loss to {loss.shape}, "
                             f"beyond the input's {x.shape}")
        self._cache = (x, log_weight, pt, w)
        return self._reduce(loss)

    def backward(self, grad_output=None):
        # ℓ = (1 − t)·x + L·softplus(−x),   L = 1 + (p − 1)·t,   d softplus(−x)/dx = −σ(−x) = σ(x) − 1
        # dℓ/dx = (1 − t) + L·(σ(x) − 1) = L·σ(x) − (L − 1 + t) = L·σ(x) − p·t
        #   (L − 1 + t = (p − 1)·t + t = p·t). Without pos_weight: σ(x) − t.
        # σ(x) is formed from e^{−|x|} (layers.sigmoid), so ±1e4 gives exactly 1 / 0: no nan.
        # times w (weight), times grad_output; "mean" divides by the number of elements.
        x, log_weight, pt, w = self._cache
        g = self._upstream(grad_output, x.shape, x.dtype)
        grad = log_weight * sigmoid(x) - pt
        if w is not None:
            grad = grad * w
        if self.reduction == "mean":
            g = g / x.dtype.type(x.size)
        return (grad * g).astype(x.dtype, copy=False)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class MSELoss(_Loss):
    """Mean squared error: ℓ = (x − y)². Twin: ``torch.nn.MSELoss``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Shape: input (N, *); target the same shape (no silent broadcasting: a (N, 1) vs (N,) mix-up
    raises ``ValueError``); output a float, or (N, *) for ``reduction="none"``.
    """

    def forward(self, input, target):
        x = np.asarray(input)
        if np.shape(target) != x.shape:
            raise ValueError(f"MSELoss: target size {np.shape(target)} differs from input size {x.shape}")
        self._diff = x - _as_float_array(target, x.dtype)
        return self._reduce(self._diff * self._diff)

    def backward(self, grad_output=None):
        # ℓ = d²,  d = x − y   =>   dℓ/dx = 2d;  "mean" divides by the number of elements.
        d = self._diff
        g = self._upstream(grad_output, d.shape, d.dtype)
        if self.reduction == "mean":
            g = g / d.dtype.type(d.size)
        return (2 * d * g).astype(d.dtype, copy=False)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits, with class weights and label smoothing.

    Twin: ``torch.nn.CrossEntropyLoss``. With logp = log_softmax(x) over the class dim, each
    sample's loss is ℓ_n = −Σ_c q_{n,c} · logp_{n,c}, where the per-class coefficients q are

    * class-index targets y_n: q_{n,c} = (1 − ε)·w_{y_n}·[c = y_n] + (ε / C)·w_c, and "mean"
      divides Σ_n ℓ_n by Σ_n w_{y_n} (torch's weighted mean; samples whose target is
      ``ignore_index`` get q = 0 and are left out of the denominator);
    * class-probability targets t_n (floating, same shape as the input):
      q_{n,c} = w_c · ((1 − ε)·t_{n,c} + ε / C), and "mean" divides by the number of samples.

    log_softmax uses log-sum-exp (subtract the row maximum), so logits of ±1e4 are fine.

    Args:
        weight: (C,) rescaling weight per class (default 1).
        ignore_index: class-index target value to skip (default −100, as torch).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε ∈ [0, 1], mixing the target with the uniform distribution.

    Shape: input (N, C) or (N, C, d1, ...); target (N,) / (N, d1, ...) integer class indices in
    [0, C), or floating probabilities of the input's shape; output a float, or (N,) /
    (N, d1, ...) for ``reduction="none"``.
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.weight = None
        if weight is not None:
            self.register_buffer("weight", np.array(weight, dtype=np.float64))

    def forward(self, input, target):
        x = np.asarray(input)
        target = np.asarray(target)
        if x.ndim < 2:
            raise ValueError(f"CrossEntropyLoss: input must be (N, C) or (N, C, d1, ...), got shape {x.shape}")
        dt, C, eps = x.dtype, x.shape[1], self.label_smoothing
        # Move the class dim last and flatten the rest: (N, C, d1, ...) -> (M, C), M = N·d1·...
        x2 = np.moveaxis(x, 1, -1).reshape(-1, C)
        w = np.ones(C, dt) if self.weight is None else _as_float_array(self.weight, dt)
        if w.shape != (C,):
            raise ValueError(f"CrossEntropyLoss: weight of shape {w.shape} for {C} classes")
        if np.issubdtype(target.dtype, np.floating):  # class probabilities
            if target.shape != x.shape:
                raise ValueError(f"CrossEntropyLoss: probability target {target.shape} differs from input {x.shape}")
            t2 = np.moveaxis(target.astype(dt, copy=False), 1, -1).reshape(-1, C)
            q = w * (t2 * dt.type(1 - eps) + dt.type(eps / C))  # (M, C)
            denominator = dt.type(x2.shape[0])
            loss_shape = target.shape[:1] + target.shape[2:]
        else:  # class indices
            if target.shape != x.shape[:1] + x.shape[2:]:
                raise ValueError(f"CrossEntropyLoss: class-index target {target.shape} for input {x.shape}")
            y = target.reshape(-1).astype(np.int64)
            keep = y != self.ignore_index
            bad = keep & ((y < 0) | (y >= C))
            if bad.any():
                raise IndexError(f"CrossEntropyLoss: target {y[bad][0]} is out of bounds for {C} classes")
            y = np.where(keep, y, 0)
            rows = np.arange(y.size)
            q = np.broadcast_to(w * dt.type(eps / C), x2.shape).copy()  # (M, C)
            q[rows, y] += dt.type(1 - eps) * w[y]
            q *= keep[:, None]
            denominator = (w[y] * keep).sum(dtype=dt)
            loss_shape = target.shape
        logp = log_softmax(x2, axis=1)  # (M, C)
        loss = -(q * logp).sum(axis=1)  # (M,)
        self._cache = (np.exp(logp), q, denominator, x.shape)
        return self._reduce(loss.reshape(loss_shape), denominator)

    def backward(self, grad_output=None):
        # ℓ = −Σ_c q_c logp_c,   logp_c = x_c − LSE(x),   ∂LSE/∂x_j = softmax(x)_j = p_j
        # dℓ/dx_j = −q_j + (Σ_c q_c)·p_j                                    (M, C)
        # "mean" divides by the denominator of the forward; then rows (M, C) -> (N, C, d1, ...).
        p, q, denominator, shape = self._cache
        dt = p.dtype
        loss_shape = shape[:1] + shape[2:]
        g = self._upstream(grad_output, loss_shape, dt)
        grad = p * q.sum(axis=1, keepdims=True) - q  # (M, C)
        if self.reduction == "mean":
            g = g / denominator
        grad = grad * np.reshape(g, (-1, 1))  # g is () or (M,)
        # (M, C) -> (N, d1, ..., C) -> (N, C, d1, ...)
        grad = np.moveaxis(grad.reshape(loss_shape + (shape[1],)), -1, 1)
        return np.ascontiguousarray(grad, dtype=dt)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}"
