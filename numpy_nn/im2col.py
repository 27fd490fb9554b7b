"""The column machinery of a convolution: im2col, its adjoint col2im.

Used by ``numpy_nn.conv.Conv2d`` (read that module's docstring first) and by the pooling layers
(``pad2d``, ``conv_output_size``). Twins: ``torch.nn.functional.unfold`` (im2col) and
``torch.nn.functional.fold`` (col2im).

Shape letters: N batch, C input channels, O output channels, H×W input size, Ho×Wo output size,
kH×kW kernel, K = C·kH·kW (one column's length), L = Ho·Wo (columns per image).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _pair(v, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> a pair of ints (torch's ``_pair``)."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


def _geometry(kernel, stride, padding, dilation):
    names = ("kernel_size", "stride", "padding", "dilation")
    return tuple(_pair(v, name) for v, name in zip((kernel, stride, padding, dilation), names))


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """floor((size + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1 (torch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pad2d(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by (pH, pW) on both sides; returns ``x`` itself when there is nothing to pad.

    One allocation and one copy: (N, C, H, W) -> (N, C, H + 2pH, W + 2pW).
    """
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


def windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """A read-only strided *view* of every receptive field of a padded input (no copy).

    (N, C, Hp, Wp) -> (N, C, kH, kW, Ho, Wo), where
    view[n, c, i, j, y, x] = xp[n, c, y·sH + i·dH, x·sW + j·dW].
    """
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(
        xp,
        shape=(xp.shape[0], xp.shape[1], kh, kw, ho, wo),
        strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
        writeable=False,
    )


def im2col(x, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1), out: np.ndarray | None = None):
    """Receptive fields as the columns of one matrix: (N, C, H, W) -> (C·kH·kW, N·Ho·Wo), plus (Ho, Wo).

    Row r = (c, i, j) and column m = (n, y, x), both in C order, hold xp[n, c, y·sH + i·dH, x·sW + j·dW],
    so ``weight.reshape(O, K) @ cols`` is the convolution of the whole batch in a single matrix
    product (one BLAS call, however small the images). ``out`` (the right shape and dtype) is
    filled in place instead of allocating: a convolution layer reuses one buffer across steps.
    """
    n, c, h, w = x.shape
    kernel, stride, padding, dilation = _geometry(kernel, stride, padding, dilation)
    ho = conv_output_size(h, kernel[0], stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kernel[1], stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"input of spatial size ({h}, {w}) with padding {padding} is smaller than the dilated kernel "
            f"{kernel} (dilation {dilation}); output size would be ({ho}, {wo})"
        )
    view = windows(pad2d(x, padding), kernel, stride, dilation, (ho, wo))  # (N, C, kH, kW, Ho, Wo), no copy
    k = c * kernel[0] * kernel[1]
    if out is None:
        out = np.empty((k, n * ho * wo), dtype=x.dtype)
    # the one copy: (N, C, kH, kW, Ho, Wo) -> (C, kH, kW, N, Ho, Wo) = (K, N·L); rows of Wo stay contiguous
    np.copyto(out.reshape(c, kernel[0], kernel[1], n, ho, wo), view.transpose(1, 2, 3, 0, 4, 5))
    return out, (ho, wo)


def col2im(cols, x_shape, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """The adjoint of ``im2col``: add every column entry back onto the input pixel it came from.

    (C·kH·kW, N·Ho·Wo) -> (N, C, H, W). A pixel covered by several receptive fields receives the
    sum of their entries. Vectorised over N, C and pixels; the only loop runs over the kH·kW kernel
    offsets, each adding one strided (C, N, Ho, Wo) slab into a zero-padded buffer.
    """
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _geometry(kernel, stride, padding, dilation)
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    cols6 = cols.reshape(c, kh, kw, n, ho, wo)  # (K, N·L) -> (C, kH, kW, N, Ho, Wo)
    # Accumulate channel-major, (C, N, Hp, Wp), the order of the rows of cols: each offset's
    # source slab cols6[:, i, j] is then read contiguously (a third faster than adding it
    # transposed into NCHW); one transposing copy at the end gives (N, C, H, W).
    dxp = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # entry (c, i, j, n, y, x) was copied from xp[n, c, y·sH + i·dH, x·sW + j·dW]
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols_ = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            dxp[:, :, rows, cols_] += cols6[:, i, j]  # (C, N, Ho, Wo) slab
    # the padding received gradient too; it is dropped: (C, N, Hp, Wp) -> (N, C, H, W)
    return np.ascontiguousarray(dxp[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3))
