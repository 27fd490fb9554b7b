"""Batch normalisation, with torch's running statistics, and its hand-written backward.

Twins: ``torch.nn.BatchNorm1d``, ``torch.nn.BatchNorm2d``.

Shape letters: N batch, C channels (features), M = number of values per channel in a batch
(N for (N, C), N·L for (N, C, L), N·H·W for (N, C, H, W)). Statistics are per channel, over
every axis except axis 1.
"""

from __future__ import annotations

import numpy as np

from .layers import _check_dtype
from .module import Module, Parameter

# Elements per chunk: 64K float32 = 256 KiB, so the few arrays a chunk touches stay in L2.
CHUNK = 65536


def _as3d(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (N, C, L), L = values per sample and channel: a view whenever the trailing axes
    are contiguous (also for a channel slice of a wider buffer, as DenseNet's concatenation)."""
    n, c = a.shape[:2]
    return a.reshape(n, c, a.size // (n * c) if n * c else 0)


def _chunks(n: int, c: int, length: int):
    """(sample slice, channel slice) blocks of ~CHUNK elements covering (N, C, L): several whole
    samples when one is small (BatchNorm1d), else one sample and a range of channels."""
    if c * length <= CHUNK:
        step = max(1, CHUNK // max(c * length, 1))
        for n0 in range(0, n, step):
            yield slice(n0, min(n, n0 + step)), slice(None)
    else:
        step = max(1, CHUNK // max(length, 1))
        for i in range(n):
            for c0 in range(0, c, step):
                yield slice(i, i + 1), slice(c0, min(c, c0 + step))


def _col(v: np.ndarray, cs: slice) -> np.ndarray:
    """Channels ``cs`` of a per-channel (C,) vector as a (C', 1) column, broadcasting over L."""
    return v[cs, None]


class _BatchNorm(Module):
    """y = (x − E[x]) / √(Var[x] + eps) · γ + β, per channel.

    Training (or ``track_running_stats=False``): E and Var are the batch's mean and *biased*
    variance (divide by M). With ``track_running_stats`` the running estimates are updated as

        running_mean ← (1 − momentum) · running_mean + momentum · mean
        running_var  ← (1 − momentum) · running_var  + momentum · var · M / (M − 1)   (unbiased)
        num_batches_tracked ← num_batches_tracked + 1

    (``momentum=None``: a cumulative average, factor 1 / num_batches_tracked), and evaluation
    normalises with them instead. Exactly torch's rules, edge cases included: an empty batch
    (M = 0) gives an empty output and gradient, leaves the running estimates as they are and
    still counts in ``num_batches_tracked``; M = 1 in training is an error (no variance).

    Args:
        num_features: C.
        eps: added to the variance under the square root (default 1e-5).
        momentum: running-average factor (default 0.1), or None for a cumulative average.
        affine: learn γ (``weight``, init ones) and β (``bias``, init zeros) (default True).
        track_running_stats: keep ``running_mean`` (zeros), ``running_var`` (ones) and
            ``num_batches_tracked`` (int64 0) buffers (default True).
        dtype: parameter and buffer dtype (default float32).
    """

    _expected_ndim: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _check_input(self, x):
        if x.ndim not in self._expected_ndim:
            dims = " or ".join(f"{d}D" for d in self._expected_ndim)
            raise ValueError(f"{type(self).__name__}: expected {dims} input, got {x.ndim}D input of shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: input has {x.shape[1]} channels on axis 1, expected {self.num_features}"
            )
        if self.affine:
            _check_dtype(x, self.weight.data, type(self).__name__)
        elif self.track_running_stats:
            _check_dtype(x, self.running_mean, type(self).__name__)

    def forward(self, x):
        self._check_input(x)
        n, c = x.shape[:2]
        m = x.size // c if c else 0  # values per channel
        self._bshape = (1, -1) + (1,) * (x.ndim - 2)  # (C,) -> broadcastable (1, C, 1, ...)
        self._batch_stats = self.training or not self.track_running_stats
        if x.size == 0:
            # An empty batch (torch's rule): an empty output, running statistics untouched, but in
            # training the batch is counted (num_batches_tracked + 1, which a cumulative average
            # then divides by).
            if self.training and self.track_running_stats:
                self.num_batches_tracked[...] += 1
            self._x3, self._invstd = None, None
            return x.copy()
        x3 = _as3d(x)  # (N, C, L)
        if self._batch_stats:
            if m == 1:  # one value per channel: its variance is 0, nothing to normalise with (torch's error)
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            # Statistics accumulate in float64 whatever x's dtype, as torch's CPU kernels do (float32
            # sums of M values lose ~M·2⁻²⁴ relative; the mean of data far from 0 suffers). Two
            # passes: the variance from centred values (no cancellation), formed chunk by chunk.
            mean = (np.add.reduce(x3, axis=2, dtype=np.float64).sum(axis=0) / m).astype(x.dtype)
            sq = np.empty((n, c))
            for ns, cs in _chunks(*x3.shape):  # Σ (x − μ)² per row; the centred chunk lives in cache only
                tmp = x3[ns, cs] - _col(mean, cs)
                np.add.reduce(np.square(tmp, out=tmp), axis=2, dtype=np.float64, out=sq[ns, cs])
            var = (sq.sum(axis=0) / m).astype(x.dtype)  # biased (1/M)
            if self.training and self.track_running_stats:
                # in place ([...]): assigning the attribute would unregister the buffer
                self.num_batches_tracked[...] += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                f = x.dtype.type(f)
                rm, rv = self.running_mean, self.running_var
                rm[...] = (1 - f) * rm + f * mean
                rv[...] = (1 - f) * rv + f * var * x.dtype.type(m / (m - 1))  # unbiased var for the running estimate
        else:
            mean, var = self.running_mean, self.running_var
        invstd = 1.0 / np.sqrt(var + x.dtype.type(self.eps))  # (C,)
        # y = γ (x − μ) invstd + β = x·a + b with a = γ·invstd, b = β − μ·a (torch's CPU kernel folds
        # it the same way): two operations per element, in cache-sized chunks.
        a = self.weight.data * invstd if self.affine else invstd
        b = (self.bias.data if self.affine else 0) - mean * a
        y = np.empty(x.shape, dtype=x.dtype)
        y3 = y.reshape(x3.shape)
        for ns, cs in _chunks(*x3.shape):
            np.multiply(x3[ns, cs], _col(a, cs), out=y3[ns, cs])
            y3[ns, cs] += _col(b, cs)
        # backward needs x̂ = (x − μ)·invstd: recomputed there from x (a view, not a copy) and μ
        self._x3, self._mean, self._invstd = x3, mean, invstd
        return y

    def backward(self, grad_output):
        # Per channel, over the M values of a batch:
        #   μ = (1/M) Σ x,  σ² = (1/M) Σ (x − μ)²,  x̂ = (x − μ) / √(σ² + eps),  y = γ x̂ + β
        #   dβ = Σ dy                       (C,)
        #   dγ = Σ dy · x̂                   (C,)
        #   dx̂ = γ dy
        # x̂ depends on x directly and through μ and σ²; with invstd = 1/√(σ² + eps):
        #   ∂x̂_i/∂x_j = invstd (δ_ij − 1/M − x̂_i x̂_j / M)
        #   dx_j = Σ_i dx̂_i ∂x̂_i/∂x_j = (1/M) γ invstd (M dy_j − Σ dy − x̂_j Σ dy x̂)
        # computed as γ invstd (dy − mean(dy) − x̂ mean(dy x̂)) (same formula, 1/M distributed),
        # with x̂ = (x − μ)·invstd formed chunk by chunk in cache: one pass for both sums, one for dx.
        # Evaluation (running statistics are constants): dx = γ invstd dy.
        dy = grad_output
        if self._invstd is None:  # the empty batch: sums over no values, dγ = dβ = 0, dx empty
            if self.affine:
                self.weight.accumulate_grad(np.zeros_like(self.weight.data))
                self.bias.accumulate_grad(np.zeros_like(self.bias.data))
            return np.empty_like(dy)
        x3, mean, invstd = self._x3, self._mean, self._invstd
        n, c, length = x3.shape
        dy3 = _as3d(dy)
        m = n * length
        gamma = self.weight.data if self.affine else np.ones_like(invstd)
        scale = gamma * invstd  # γ · invstd, (C,)
        if self.affine or self._batch_stats:
            rows_dy, rows_dy_xhat = np.empty((n, c)), np.empty((n, c))  # float64 accumulation, as forward
            for ns, cs in _chunks(n, c, length):
                np.add.reduce(dy3[ns, cs], axis=2, dtype=np.float64, out=rows_dy[ns, cs])
                xhat = x3[ns, cs] - _col(mean, cs)
                xhat *= _col(invstd, cs)
                np.add.reduce(np.multiply(xhat, dy3[ns, cs], out=xhat), axis=2, dtype=np.float64,
                              out=rows_dy_xhat[ns, cs])
            sum_dy, sum_dy_xhat = rows_dy.sum(axis=0), rows_dy_xhat.sum(axis=0)
        if self.affine:
            self.weight.accumulate_grad(sum_dy_xhat.astype(dy.dtype))
            self.bias.accumulate_grad(sum_dy.astype(dy.dtype))
        dx = np.empty(dy.shape, dtype=dy.dtype)
        dx3 = dx.reshape(dy3.shape)
        if not self._batch_stats:
            for ns, cs in _chunks(n, c, length):
                np.multiply(dy3[ns, cs], _col(scale, cs), out=dx3[ns, cs])
            return dx
        k_xhat = (sum_dy_xhat / m).astype(dy.dtype)  # mean(dy x̂)
        k_dy = (sum_dy / m).astype(dy.dtype)  # mean(dy)
        for ns, cs in _chunks(n, c, length):
            d = dx3[ns, cs]
            np.subtract(x3[ns, cs], _col(mean, cs), out=d)
            d *= _col(invstd * k_xhat, cs)  # x̂ · mean(dy x̂)
            d += _col(k_dy, cs)  # + mean(dy)
            np.subtract(dy3[ns, cs], d, out=d)  # dy − mean(dy) − x̂ mean(dy x̂)
            d *= _col(scale, cs)
        return dx

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, per feature C. Twin: ``torch.nn.BatchNorm1d``.

    See ``_BatchNorm`` for the formula and the running statistics. Shape: unchanged.
    """

    _expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel over N·H·W values.

    Twin: ``torch.nn.BatchNorm2d``. See ``_BatchNorm`` for the formula and the running statistics.

    Shape: (N, C, H, W) -> (N, C, H, W).

    Example:
        >>> bn = BatchNorm2d(8); y = bn(np.random.rand(4, 8, 5, 5).astype(np.float32))
        >>> bool(abs(y.mean()) < 1e-5), [k for k in bn.state_dict()]
        (True, ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'])
    """

    _expected_ndim = (4,)
