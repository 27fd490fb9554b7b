"""Finite-difference gradient checking: the one tool every layer and loss is checked with.

Twin: ``torch.autograd.gradcheck``. A hand-written backward is right when it agrees with the
slope the forward itself shows under tiny perturbations.

**The idea.** Draw a random upstream gradient u shaped like the output y = f(x) and form the
scalar s(x) = ⟨u, f(x)⟩ = Σ_i u_i·f(x)_i. Its gradient is exactly what ``backward(u)`` must return:
ds/dx = (∂f/∂x)ᵀ u (a vector-Jacobian product), and likewise ds/dθ for every parameter θ, which
``backward`` adds into ``θ.grad``. Numerically, for one entry x_j,

    ds/dx_j ≈ (s(x + ε·e_j) − s(x − ε·e_j)) / (2ε)         (central difference, error O(ε²))

A random u (never all ones) makes every output entry count with a different weight, so a
backward that mixes up rows, forgets a transpose or drops a term cannot cancel out.

**The criterion** (torch's): |analytic − numeric| ≤ atol + rtol·|numeric| for every checked
entry. Everything runs in float64: with ε = 1e-6 the round-off of s is ~1e-16·|s|/ε ≈ 1e-10·|s|,
far below atol; in float32 it would be ~1e-1 (so float32 inputs are refused).

**What can be checked** (``fn`` is called as ``fn(*inputs)``; only ``inputs[0]`` is
differentiated, the others, e.g. targets, are held constant):

* a ``Module``: ``gradcheck(layer, x)`` checks ``layer.backward(u)`` against ds/dx and every
  parameter's ``.grad`` against ds/dθ (each checked θ entry is perturbed in place and restored);
* a loss: ``gradcheck(BCEWithLogitsLoss(), (logits, target))``; a "mean"/"sum" loss returns a
  float, so u is a random scalar and ``loss.backward(u)`` is checked;
* a pair of plain functions: ``gradcheck((forward, backward), (x, ...))`` where
  ``forward(*inputs) -> y`` and ``backward(u, *inputs) -> dx`` (e.g. ``(np.tanh, lambda u, x:
  u * (1 - np.tanh(x) ** 2))``).

**Whole-forward perturbation.** Every perturbed entry re-runs the entire forward on the entire
batch, so outputs that couple batch entries (BatchNorm in training mode, a loss's mean) are
handled: the numeric slope includes every path from x_j to every output.

**Randomness.** The forward must be deterministic. Check Dropout in eval mode, or fix its mask:
pass ``before_forward=reseed_dropout(model)``, which gives every dropout in the model a freshly
seeded generator before each forward, so every call draws the same mask.

**State.** Parameter ``.grad``s and buffers (e.g. BatchNorm running statistics, which each
training forward updates) are restored afterwards, so a check leaves the module as it was
(apart from the generators ``reseed_dropout`` replaces).

**Sampling.** A tensor with more than ``max_entries`` entries has ``max_entries`` of them checked,
drawn without replacement by a generator seeded with ``seed`` (each forward costs a full pass, so
checking a (64, 3, 3, 3) conv weight entry by entry would take 1728×2 forwards). A systematic
error in a backward shows up in any sample; pass ``max_entries=None`` to check every entry.

**Kinks.** Keep inputs away from non-differentiable points (ReLU at 0, max-pool ties) by more
than ε; at a kink the two one-sided slopes differ and no backward can match the central one.
Beware exact zeros that arise inside a model: with zero-initialised biases, a sample whose
features are all dropped (or all cut by a ReLU) reaches the next ReLU at exactly 0. Give such
models non-zero biases before checking.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .module import Module


class GradcheckError(AssertionError):
    """A backward disagrees with the finite-difference slope of its forward."""


def reseed_dropout(module: Module, seed: int = 0) -> Callable[[], None]:
    """Returns a ``before_forward`` hook giving each module with a ``generator`` attribute (every
    ``Dropout``) a new ``np.random.default_rng(seed + k)`` (k its position in ``modules()``).

    Called before every forward, it makes each forward draw identical masks, so a training-mode
    dropout becomes a fixed (differentiable) elementwise scaling that ``gradcheck`` can test.
    """

    def hook() -> None:
        for k, m in enumerate(module.modules()):
            if hasattr(m, "generator"):
                m.generator = np.random.default_rng(seed + k)

    return hook


def _pick(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or a seeded sample of ``max_entries``."""
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def _as_float64(a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 ({what} is {a.dtype}): central differences in float32 are "
            "dominated by round-off. Cast inputs with .astype(np.float64) and modules with .double()."
        )
    return a


def _compare(quantity: str, analytic: np.ndarray, numeric: np.ndarray, flat_idx: np.ndarray,
             shape: tuple[int, ...], atol: float, rtol: float) -> None:
    bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
    if bad.any():
        k = int(np.argmax(np.abs(analytic - numeric) * bad))
        index = np.unravel_index(flat_idx[k], shape) if shape else ()
        index = tuple(int(i) for i in index)
        raise GradcheckError(
            f"gradcheck: d<u, f>/d{quantity}{list(index)}: analytic {analytic[k]!r} vs numeric {numeric[k]!r} "
            f"(|diff| {abs(analytic[k] - numeric[k]):.3g} > atol + rtol·|numeric| = "
            f"{atol + rtol * abs(numeric[k]):.3g}; {int(bad.sum())} of {bad.size} checked entries differ)"
        )


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    max_entries: int | None = 64,
    before_forward: Callable[[], None] | None = None,
) -> bool:
    """Check ``fn``'s hand-written backward against central differences of its forward.

    Args:
        fn: a ``Module`` or loss (``fn(*inputs)`` then ``fn.backward(u)``; parameters from
            ``fn.named_parameters()`` are checked too), or a pair ``(forward, backward)`` of
            functions with ``forward(*inputs) -> y`` and ``backward(u, *inputs) -> dx``.
        inputs: one array, or a tuple whose first entry is differentiated (float64) and whose
            other entries (targets) are passed unchanged.
        eps: the finite-difference step ε.
        atol, rtol: pass when |analytic − numeric| ≤ atol + rtol·|numeric| for each entry.
        seed: seeds the upstream gradient u and the sampling of entries.
        max_entries: at most this many entries are checked per tensor (input and each
            parameter), a seeded sample; ``None`` checks all.
        before_forward: called with no arguments before every forward (e.g.
            ``reseed_dropout(model)`` to fix dropout masks).

    Returns:
        True. Raises ``GradcheckError`` naming the quantity (``input`` or ``param <name>``), the
        index, the analytic and the numeric value at the worst failing entry; ``TypeError`` for
        non-float64 inputs or parameters.

    Example:
        >>> gradcheck(Linear(3, 2).double(), np.random.default_rng(0).standard_normal((4, 3)))
        True
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    x = _as_float64(inputs[0], "inputs[0]").copy()
    rest = inputs[1:]
    if isinstance(fn, tuple):
        forward_fn, backward_fn = fn
        params: list = []

        def backward(u):
            return backward_fn(u, x.copy(), *rest)
    else:
        forward_fn, backward = fn, fn.backward
        params = list(fn.named_parameters()) if hasattr(fn, "named_parameters") else []
    for name, p in params:
        _as_float64(p.data, f"parameter {name}")

    def forward(xx: np.ndarray) -> np.ndarray:
        if before_forward is not None:
            before_forward()
        return np.asarray(forward_fn(xx, *rest), dtype=np.float64)

    rng = np.random.default_rng(seed)
    saved_grads = [(p, p.grad) for _, p in params]
    saved_buffers = _save_buffers(fn)
    try:
        # Analytic: one forward, one backward with a random upstream gradient u.
        for _, p in params:
            p.grad = None
        y = forward(x.copy())
        u = rng.standard_normal(y.shape)
        u_arg = float(u) if y.ndim == 0 else u.copy()
        grad_x = backward(u_arg)
        if grad_x is None or np.shape(grad_x) != x.shape:
            raise GradcheckError(f"gradcheck: backward returned {type(grad_x).__name__} of shape "
                                 f"{np.shape(grad_x)} for an input of shape {x.shape}")
        analytic = {"input": np.asarray(grad_x, dtype=np.float64)}
        for name, p in params:
            g = np.zeros(p.shape) if p.grad is None else np.asarray(p.grad, dtype=np.float64)
            analytic[f"param {name}"] = g.copy()

        def s(xx: np.ndarray) -> float:
            return float(np.sum(u * forward(xx)))

        # Numeric: central differences, the input entry by entry (on copies)...
        idx = _pick(x.size, max_entries, rng)
        numeric = np.empty(idx.size)
        for k, j in enumerate(idx):
            xp, xm = x.copy(), x.copy()
            xp.flat[j] += eps
            xm.flat[j] -= eps
            numeric[k] = (s(xp) - s(xm)) / (2 * eps)
        _compare("input", analytic["input"].reshape(-1)[idx], numeric, idx, x.shape, atol, rtol)

        # ... then each parameter entry, perturbed in place and restored exactly.
        for name, p in params:
            idx = _pick(p.data.size, max_entries, rng)
            numeric = np.empty(idx.size)
            for k, j in enumerate(idx):
                at = np.unravel_index(j, p.shape)
                old = p.data[at]
                p.data[at] = old + eps
                sp = s(x.copy())
                p.data[at] = old - eps
                sm = s(x.copy())
                p.data[at] = old
                numeric[k] = (sp - sm) / (2 * eps)
            _compare(f"param {name}", analytic[f"param {name}"].reshape(-1)[idx], numeric, idx,
                     p.shape, atol, rtol)
    finally:
        for p, g in saved_grads:
            p.grad = g
        _restore_buffers(saved_buffers)
    return True


def _save_buffers(fn) -> list:
    if not isinstance(fn, Module):
        return []
    return [(m, name, np.array(getattr(m, name), copy=True)) for m in fn.modules() for name in m._buffers]


def _restore_buffers(saved: Iterable) -> None:
    for m, name, value in saved:
        object.__setattr__(m, name, value)
