"""Spatial pooling over NCHW images, each backward written under its forward.

Twins: ``torch.nn.MaxPool2d``, ``torch.nn.AvgPool2d``, ``torch.nn.AdaptiveAvgPool2d`` (output 1).

Shape letters: N batch, C channels, H×W input, Ho×Wo output, kH×kW window, sH×sW stride.
Forward and backward loop over window offsets at most (each step handles one strided slab of
the whole batch), never over batch, channels or pixels.
"""

from __future__ import annotations

import numpy as np

from .im2col import _pair, conv_output_size, pad2d
from .module import Module


def as_batch(x: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    """(N, C, H, W) as is, or unbatched (C, H, W) as a (1, C, H, W) view (torch accepts both);
    also says which, so the output and the input gradient drop the batch axis again."""
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"{name} expects input (N, C, H, W) or unbatched (C, H, W), got shape {x.shape}")
    return x, False


def _pool_geometry(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"pad should be at most half of effective kernel size, but got pad={padding}, kernel_size={kernel}")
    ho = conv_output_size(x.shape[2], kh, sh, ph)
    wo = conv_output_size(x.shape[3], kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"input of spatial size {x.shape[2:]} is too small for pooling window {kernel}")
    return ho, wo


def _offset_slices(i, j, stride, out_hw):
    """The (Ho, Wo) strided slab of the padded input that window offset (i, j) touches."""
    (sh, sw), (ho, wo) = stride, out_hw
    return (slice(None), slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))


def _slab(axis: int, j: int, stride: int, n_out: int) -> tuple:
    """Index of offset j of every 1-D window along ``axis`` (2 = H, 3 = W): j, j + s, ..., n_out of them."""
    index = [slice(None)] * 4
    index[axis] = slice(j, j + stride * (n_out - 1) + 1, stride)
    return tuple(index)


def _max_along(a: np.ndarray, axis: int, kernel: int, stride: int, n_out: int):
    """1-D max pooling of ``a`` along ``axis``, and the offset (0..kernel−1) of each window's maximum.

    Offsets are scanned in increasing order and a later one takes over only when *strictly*
    greater, so on ties the first (lowest) offset is kept. The offset only grows during the scan,
    so "arg ← j where better" is arg ← max(arg, better·j): two fast passes, no masked copy.
    """
    m = a[_slab(axis, 0, stride, n_out)].copy()
    arg = np.zeros(m.shape, dtype=np.min_scalar_type(kernel - 1))
    for j in range(1, kernel):
        s = a[_slab(axis, j, stride, n_out)]
        np.maximum(arg, (s > m) * arg.dtype.type(j), out=arg)
        np.maximum(m, s, out=m)  # propagates NaN, as torch does
    return m, arg


def _route_along(g: np.ndarray, arg: np.ndarray, axis: int, kernel: int, stride: int, size: int) -> np.ndarray:
    """The backward of ``_max_along``: each window's gradient goes to the offset ``arg`` chose;
    overlapping windows (stride < kernel) add what lands on the same position."""
    shape = list(g.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=g.dtype)
    for j in range(kernel):
        # g·[arg = j] (a multiply by the mask, as ReLU's backward, is ~8x faster than np.where)
        out[_slab(axis, j, stride, g.shape[axis])] += g * (arg == j)
    return out


def _sum_tiles(x: np.ndarray, kh: int, kw: int, ho: int, wo: int) -> np.ndarray:
    """Σ over each kH×kW tile of non-overlapping windows (stride = kernel, no padding), separably.

    (N, C, H, W) -> rows (N, C, Ho, kH, Wo·kW) by a reshape (rows and columns no window covers are
    dropped first); the kH rows of each tile are added (contiguous rows of Wo·kW), then, after a
    reshape to (N, C, Ho, Wo, kW), the kW columns: kH + kW − 2 adds of whole slabs, no loop over
    pixels and no zero-filled accumulator.
    """
    n, c = x.shape[:2]
    rows = x[:, :, : ho * kh, : wo * kw].reshape(n, c, ho, kh, wo * kw)  # a view unless cropped
    acc = np.add(rows[:, :, :, 0], rows[:, :, :, 1]) if kh > 1 else rows[:, :, :, 0].copy()
    for i in range(2, kh):
        acc += rows[:, :, :, i]
    cols = acc.reshape(n, c, ho, wo, kw)  # (N, C, Ho, Wo·kW) -> (N, C, Ho, Wo, kW), a view
    y = np.add(cols[..., 0], cols[..., 1]) if kw > 1 else cols[..., 0].copy()
    for j in range(2, kw):
        y += cols[..., j]
    return y


class _Pool2d(Module):
    """What MaxPool2d and AvgPool2d share: torch's window arguments (``stride`` defaults to
    ``kernel_size``; ints or pairs)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """y[n, c, y, x] = max over the window of xp (x padded with −∞).

    Twin: ``torch.nn.MaxPool2d`` (``dilation=1``, ``ceil_mode=False``).

    Computed separably: the maximum of a kH×kW window is the maximum over its kH rows of each
    row's maximum over kW columns. So a 1-D max pool along W (every row of xp) is followed by one
    along H, each a loop over its kernel offsets: kH + kW slab passes instead of kH·kW, and every
    row maximum is computed once even when windows overlap.

    Gradient: the whole upstream gradient of a window goes to its maximum. On ties the **first**
    maximum in the window's row-major scan order takes it (torch's CPU rule: it replaces the
    running maximum only on a strictly greater value). The separable form keeps exactly that
    element: the W pass keeps the leftmost maximum of each row, the H pass the topmost row holding
    the window maximum; the backward routes the gradient back through the H pass, then the W pass.
    Overlapping windows that pick the same pixel add their gradients there.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default ``kernel_size``).
        padding: implicit −∞ padding on both sides, at most half the kernel.

    Shape: (N, C, H, W) -> (N, C, Ho, Wo), or unbatched (C, H, W) -> (C, Ho, Wo),
        Ho = floor((H + 2·pH − kH) / sH) + 1, likewise Wo.

    Example:
        >>> MaxPool2d(2)(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
        array([[ 5.,  7.],
               [13., 15.]])
    """


    def forward(self, x):
        x, self._unbatched = as_batch(x, "MaxPool2d")
        ho, wo = _pool_geometry(x, self.kernel_size, self.stride, self.padding)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        xp = pad2d(x, self.padding, value=-np.inf)  # (N, C, Hp, Wp)
        rows, self._col_arg = _max_along(xp, 3, kw, sw, wo)  # (N, C, Hp, Wp) -> (N, C, Hp, Wo)
        y, self._row_arg = _max_along(rows, 2, kh, sh, ho)  # (N, C, Hp, Wo) -> (N, C, Ho, Wo)
        self._padded_hw = xp.shape[2:]
        return y[0] if self._unbatched else y

    def backward(self, grad_output):
        # y = max_i r_i (the H pass), r = max_j xp_j (the W pass, per row):
        #   d r[row i of the window] += dy where i is the H pass's choice, 0 for the other rows;
        #   d xp[column j of the row] += d r where j is the W pass's choice.
        # Together: dxp[first arg-max of each window] += dy, torch's gradient, ties included.
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        hp, wp = self._padded_hw
        if self._unbatched:
            grad_output = grad_output[None]
        d_rows = _route_along(grad_output, self._row_arg, 2, kh, sh, hp)  # (N, C, Ho, Wo) -> (N, C, Hp, Wo)
        dxp = _route_along(d_rows, self._col_arg, 3, kw, sw, wp)  # (N, C, Hp, Wo) -> (N, C, Hp, Wp)
        dx = dxp[:, :, ph : hp - ph, pw : wp - pw]
        return dx[0] if self._unbatched else dx



class AvgPool2d(_Pool2d):
    """y[n, c, y, x] = (1 / (kH·kW)) Σ over the window of xp (x zero-padded).

    Twin: ``torch.nn.AvgPool2d`` with its defaults ``count_include_pad=True``, ``ceil_mode=False``:
    padded zeros count in the divisor, which is always kH·kW.

    Args:
        kernel_size: window size, an int or a pair.
        stride: window step (default ``kernel_size``).
        padding: implicit zero padding on both sides, at most half the kernel.

    Shape: (N, C, H, W) -> (N, C, Ho, Wo), or unbatched (C, H, W) -> (C, Ho, Wo),
        Ho = floor((H + 2·pH − kH) / sH) + 1, likewise Wo.
    """


    def forward(self, x):
        x, self._unbatched = as_batch(x, "AvgPool2d")
        ho, wo = _pool_geometry(x, self.kernel_size, self.stride, self.padding)
        kh, kw = self.kernel_size
        xp = pad2d(x, self.padding)
        self._x_shape, self._out_hw = x.shape, (ho, wo)
        if self.stride == self.kernel_size and self.padding == (0, 0):
            y = _sum_tiles(x, kh, kw, ho, wo)  # windows tile the image (DenseNet's 2×2/2): separable sums
        else:
            y = np.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
            for i in range(kh):  # sum the kH·kW offset slabs, no window copy
                for j in range(kw):
                    y += xp[_offset_slices(i, j, self.stride, (ho, wo))]
        y *= x.dtype.type(1.0 / (kh * kw))
        return y[0] if self._unbatched else y

    def backward(self, grad_output):
        # y = (1/k) Σ_{window} xp   =>   every window element receives dy / k, k = kH·kW;
        # overlapping windows add (the "+=" over offsets).
        n, c, h, w = self._x_shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if self._unbatched:
            grad_output = grad_output[None]
        share = grad_output * grad_output.dtype.type(1.0 / (kh * kw))
        dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=grad_output.dtype)
        for i in range(kh):
            for j in range(kw):
                dxp[_offset_slices(i, j, self.stride, self._out_hw)] += share
        dx = dxp[:, :, ph : ph + h, pw : pw + w]
        return dx[0] if self._unbatched else dx



class AdaptiveAvgPool2d(Module):
    """Global average pooling: y[n, c, 0, 0] = (1 / (H·W)) Σ_{y,x} x[n, c, y, x].

    Twin: ``torch.nn.AdaptiveAvgPool2d`` for ``output_size`` 1 or (1, 1), the only sizes supported.

    Shape: (N, C, H, W) -> (N, C, 1, 1), or unbatched (C, H, W) -> (C, 1, 1).
    """

    def __init__(self, output_size=1):
        super().__init__()
        if _pair(output_size, "output_size") != (1, 1):
            raise NotImplementedError(f"AdaptiveAvgPool2d supports output_size 1 or (1, 1), got {output_size!r}")
        self.output_size = output_size

    def forward(self, x):
        as_batch(x, "AdaptiveAvgPool2d")  # (N, C, H, W) or (C, H, W): the mean is over the last two axes
        self._x_shape = x.shape
        return x.mean(axis=(-2, -1), keepdims=True, dtype=x.dtype)  # (..., H, W) -> (..., 1, 1)

    def backward(self, grad_output):
        # y = (1/(H·W)) Σ x  =>  dx = dy / (H·W), broadcast over the H×W pixels.
        h, w = self._x_shape[-2:]
        share = grad_output * grad_output.dtype.type(1.0 / (h * w))  # (N, C, 1, 1) or (C, 1, 1)
        return np.broadcast_to(share, self._x_shape).copy()

    def extra_repr(self):
        return f"output_size={self.output_size}"
