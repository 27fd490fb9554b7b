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
        axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channels
        bshape = (1, -1) + (1,) * (x.ndim - 2)  # (C,) -> broadcastable (1, C, 1, ...)
        m = x.size // x.shape[1]
        self._batch_stats = self.training or not self.track_running_stats
        if self._batch_stats and m == 0:
            # An empty batch (torch's rule): an empty output, running statistics untouched, but the
            # batch is counted (num_batches_tracked + 1, which a cumulative average then divides by).
            if self.training and self.track_running_stats:
                self.num_batches_tracked[...] += 1
            self._xhat, self._invstd, self._axes, self._bshape = x.copy(), None, axes, bshape
            return x.copy()
        if self._batch_stats:
            if m == 1:  # one value per channel: its variance is 0, nothing to normalise with (torch's error)
                raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
            # Statistics accumulate in float64 whatever the input dtype, as torch's CPU kernels do
            # (float32 sums of M values lose ~M·2⁻²⁴ relative; the mean of data far from 0 suffers).
            mean = x.mean(axis=axes, dtype=np.float64).astype(x.dtype)
            xc = x - mean.reshape(bshape)  # two passes: var from centred values, no cancellation
            var = np.mean(np.square(xc), axis=axes, dtype=np.float64).astype(x.dtype)  # biased (1/M)
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
            xc = x - mean.reshape(bshape)
        invstd = 1.0 / np.sqrt(var + x.dtype.type(self.eps))  # (C,)
        xhat = xc
        xhat *= invstd.reshape(bshape)  # in place: xc is not needed any more
        self._xhat, self._invstd, self._axes, self._bshape = xhat, invstd, axes, bshape
        if not self.affine:
            return xhat.copy()
        y = xhat * self.weight.data.reshape(bshape)
        y += self.bias.data.reshape(bshape)  # in place: one fresh array, not two
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
        # computed as γ invstd (dy − mean(dy) − x̂ mean(dy x̂)) (same formula, 1/M distributed).
        # Evaluation (running statistics are constants): dx = γ invstd dy.
        dy, xhat, axes, bshape = grad_output, self._xhat, self._axes, self._bshape
        if self._invstd is None:  # the empty batch: sums over no values, dγ = dβ = 0, dx empty
            if self.affine:
                self.weight.accumulate_grad(np.zeros_like(self.weight.data))
                self.bias.accumulate_grad(np.zeros_like(self.bias.data))
            return np.empty_like(dy)
        gamma = self.weight.data if self.affine else np.ones_like(self._invstd)
        scale = (gamma * self._invstd).reshape(bshape)  # γ · invstd, (1, C, 1, ...)
        if self.affine or self._batch_stats:
            sum_dy = dy.sum(axis=axes, dtype=np.float64).astype(dy.dtype)  # float64 accumulation, as forward
            sum_dy_xhat = (dy * xhat).sum(axis=axes, dtype=np.float64).astype(dy.dtype)
        if self.affine:
            self.weight.accumulate_grad(sum_dy_xhat.copy())
            self.bias.accumulate_grad(sum_dy.copy())
        if not self._batch_stats:
            return dy * scale
        inv_m = dy.dtype.type(1.0 / (dy.size // dy.shape[1]))
        dx = xhat * (sum_dy_xhat * inv_m).reshape(bshape)  # x̂ · mean(dy x̂)
        dx += (sum_dy * inv_m).reshape(bshape)  # + mean(dy)
        np.subtract(dy, dx, out=dx)  # dy − mean(dy) − x̂ mean(dy x̂)
        dx *= scale
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
