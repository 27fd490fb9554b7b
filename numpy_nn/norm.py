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

# Elements per chunk of rows: 64K float32 = 256 KiB, so the few arrays a chunk touches stay in L2.
CHUNK = 65536


def _rows(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (N·C, L): one row per (sample, channel), a view of a C-contiguous array."""
    n, c = a.shape[:2]
    return np.ascontiguousarray(a).reshape(n * c, a.size // (n * c))


def _per_row(v: np.ndarray, n: int) -> np.ndarray:
    """A per-channel (C,) vector as the (N·C, 1) column matching ``_rows``' rows."""
    return np.tile(v, n)[:, None]


def _channel_sum(row_sums: np.ndarray, n: int, c: int, m: int) -> np.ndarray:
    """(N·C,) per-row sums -> (C,) per-channel sums / m, added over N in float64."""
    return row_sums.reshape(n, c).sum(axis=0, dtype=np.float64) / m


def _chunks(a2: np.ndarray, scratch: bool = True):
    """Yield (row slice, scratch (rows, L) array or None) over ``a2``'s rows, ~CHUNK elements each."""
    rows, length = a2.shape
    step = max(1, CHUNK // max(length, 1))
    tmp = np.empty((min(step, rows), length), dtype=a2.dtype) if scratch else None
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        yield slice(r0, r1), (None if tmp is None else tmp[: r1 - r0])


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
        self._xhat_buffer = None  # x̂ of the last forward, reused by the next one of the same shape

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
            self._xhat, self._invstd = x.copy(), None
            return x.copy()
        x2 = _rows(x)  # (N·C, L): one row per (sample, channel), L = M / N values
        if self._batch_stats:
            if m == 1:  # one value per channel: its variance is 0, nothing to normalise with (torch's error)
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            # Statistics: the mean accumulates in float64 whatever x's dtype, as torch's CPU kernels
            # do (data far from 0 would otherwise lose digits: L·ε of the mean's magnitude); the
            # variance, a sum of centred squares (two passes: no cancellation), sums each row in x's
            # dtype (NumPy's pairwise summation along a contiguous row: error ~ log₂(L)·ε), the rows
            # of a channel in float64.
            mean = _channel_sum(np.add.reduce(x2, axis=1, dtype=np.float64), n, c, m).astype(x.dtype)
            mean_r = _per_row(mean, n)
            sq = np.empty(n * c, dtype=x.dtype)
            for r, tmp in _chunks(x2):  # Σ (x − μ)² row by row; the centred chunk lives in cache only
                np.subtract(x2[r], mean_r[r], out=tmp)
                np.add.reduce(np.square(tmp, out=tmp), axis=1, out=sq[r])
            var = _channel_sum(sq, n, c, m).astype(x.dtype)  # biased (1/M)
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
        # One pass, chunk by chunk in cache: x̂ = (x − μ) · invstd (kept for backward), y = γ x̂ + β.
        # x̂'s buffer is reused from the previous batch (same shape): no fresh pages to fault in
        xhat = self._xhat_buffer
        if xhat is None or xhat.shape != x.shape or xhat.dtype != x.dtype:
            xhat = self._xhat_buffer = np.empty(x.shape, x.dtype)
        y = np.empty(x.shape, x.dtype)
        xhat2, y2 = xhat.reshape(x2.shape), y.reshape(x2.shape)
        mean_r, invstd_r = _per_row(mean, n), _per_row(invstd, n)
        gamma_r, beta_r = (_per_row(self.weight.data, n), _per_row(self.bias.data, n)) if self.affine else (None, None)
        for r, _ in _chunks(x2, scratch=False):
            np.subtract(x2[r], mean_r[r], out=xhat2[r])
            xhat2[r] *= invstd_r[r]
            if self.affine:
                np.multiply(xhat2[r], gamma_r[r], out=y2[r])
                y2[r] += beta_r[r]
        self._xhat, self._invstd = xhat, invstd
        return y if self.affine else xhat.copy()

    def backward(self, grad_output):
        # Per channel, over the M values of a batch:
        #   μ = (1/M) Σ x,  σ² = (1/M) Σ (x − μ)²,  x̂ = (x − μ) / √(σ² + eps),  y = γ x̂ + β
        #   dβ = Σ dy                       (C,)
        #   dγ = Σ dy · x̂                   (C,)
        #   dx̂ = γ dy
        # x̂ depends on x directly and through μ and σ²; with invstd = 1/√(σ² + eps):
        #   ∂x̂_i/∂x_j = invstd (δ_ij − 1/M − x̂_i x̂_j / M)
        #   dx_j = Σ_i dx̂_i ∂x̂_i/∂x_j = (1/M) γ invstd (M dy_j − Σ dy − x̂_j Σ dy x̂)
        # computed as γ invstd (dy − mean(dy) − x̂ mean(dy x̂)) (same formula, 1/M distributed).
        # Evaluation (running statistics are constants): dx = γ invstd dy.
        # Both sums in one pass over (dy, x̂), dx in one more, chunk by chunk (rows of (N·C, L)).
        dy, xhat = grad_output, self._xhat
        if self._invstd is None:  # the empty batch: sums over no values, dγ = dβ = 0, dx empty
            if self.affine:
                self.weight.accumulate_grad(np.zeros_like(self.weight.data))
                self.bias.accumulate_grad(np.zeros_like(self.bias.data))
            return np.empty_like(dy)
        n, c = dy.shape[:2]
        m = dy.size // c
        dy2, xhat2 = _rows(dy), xhat.reshape(-1, xhat.size // (n * c))
        gamma = self.weight.data if self.affine else np.ones_like(self._invstd)
        scale = gamma * self._invstd  # γ · invstd, (C,)
        if self.affine or self._batch_stats:
            rows_dy, rows_dy_xhat = np.empty(n * c, dtype=dy.dtype), np.empty(n * c, dtype=dy.dtype)
            for r, tmp in _chunks(dy2):
                np.add.reduce(dy2[r], axis=1, out=rows_dy[r])
                np.add.reduce(np.multiply(dy2[r], xhat2[r], out=tmp), axis=1, out=rows_dy_xhat[r])
            sum_dy = _channel_sum(rows_dy, n, c, 1)  # float64 accumulation over N, as forward
            sum_dy_xhat = _channel_sum(rows_dy_xhat, n, c, 1)
        if self.affine:
            self.weight.accumulate_grad(sum_dy_xhat.astype(dy.dtype))
            self.bias.accumulate_grad(sum_dy.astype(dy.dtype))
        dx = np.empty_like(dy, order="C")
        dx2 = dx.reshape(dy2.shape)
        scale_r = _per_row(scale, n)
        if not self._batch_stats:
            for r, _ in _chunks(dy2, scratch=False):
                np.multiply(dy2[r], scale_r[r], out=dx2[r])
            return dx
        k_xhat = _per_row((sum_dy_xhat / m).astype(dy.dtype), n)  # mean(dy x̂)
        k_dy = _per_row((sum_dy / m).astype(dy.dtype), n)  # mean(dy)
        for r, _ in _chunks(dy2, scratch=False):
            np.multiply(xhat2[r], k_xhat[r], out=dx2[r])  # x̂ · mean(dy x̂)
            dx2[r] += k_dy[r]  # + mean(dy)
            np.subtract(dy2[r], dx2[r], out=dx2[r])  # dy − mean(dy) − x̂ mean(dy x̂)
            dx2[r] *= scale_r[r]
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
