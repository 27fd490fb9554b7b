"""2-D convolution by im2col + one matrix product, and its hand-written backward.

Twin: ``torch.nn.Conv2d`` (same arguments, NCHW layout, weight ``(C_out, C_in, kH, kW)``).

Shape letters: N batch, C input channels, O output channels, H×W input size, Ho×Wo output size,
kH×kW kernel, K = C·kH·kW (one column's length), L = Ho·Wo (columns per image).

The idea: every output pixel is a dot product between the flattened weight of one output channel
(length K) and the K input values its receptive field covers. ``im2col`` lays the receptive
fields of the whole batch out as the columns of one (K, N·L) matrix, so the convolution is the
single product ``W (O, K) @ cols (K, N·L) -> (O, N·L)``, then one transposing copy to NCHW. The
backward is two more products and ``col2im``, which adds each column back onto the pixels it
was copied from. One large product instead of N small ones keeps BLAS efficient on small images
(8×8 late in a network) and costs only one thread hand-off per product.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import init
from .layers import _check_dtype
from .module import Module, Parameter


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


def conv_input_grad_stride1(dy2, weight, x_shape, padding, dilation, grid=None, dxp=None) -> np.ndarray:
    """dL/dx of a stride-1 convolution without the (K, N·L) column matrix: ``col2im(W₂ᵀ dY₂)``, faster.

    Args:
        dy2: the upstream gradient as (O, N·Ho·Wo) (``Y₂``'s layout).
        weight: (O, C, kH, kW). x_shape: (N, C, H, W). padding, dilation: pairs.
        grid, dxp: optional reusable buffers of shapes (O, N·Hp·Wp) (its zero border is kept) and
            (C, N·Hp·Wp + max_off).

    The padded-grid trick. Index every output position by where its window starts in the padded
    input, q = n·Hp·Wp + y·Wp + x. With stride 1 the input pixel that kernel tap (i, j) of output q
    reads is then q + off_ij, off_ij = i·dH·Wp + j·dW, for every image at once, so

        dXp[c, q + off_ij] += Σ_o W[o, c, i, j] · dY[o, q]      for each tap (i, j)

    is one (C, O) @ (O, M) product added into a *contiguous shifted slice* of the flat padded
    gradient (M = N·Hp·Wp grid positions; positions with y ≥ Ho or x ≥ Wo are not outputs and carry
    dY = 0, so they add nothing). Done in column chunks of ~2 MB, each tap's product is added while it
    is still in cache: no (K, N·L) intermediate is written to memory and read back, and every add
    runs over thousands of contiguous elements instead of rows of Wo.
    """
    n, c, h, w = x_shape
    o, _, kh, kw = weight.shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = hp - dh * (kh - 1), wp - dw * (kw - 1)
    m, max_off = n * hp * wp, (kh - 1) * dh * wp + (kw - 1) * dw
    if grid is None or grid.shape != (o, m) or grid.dtype != dy2.dtype:
        grid = np.zeros((o, m), dtype=dy2.dtype)
    np.copyto(grid.reshape(o, n, hp, wp)[:, :, :ho, :wo], dy2.reshape(o, n, ho, wo))  # (O, N·L) onto the grid
    if dxp is None or dxp.shape != (c, m + max_off) or dxp.dtype != dy2.dtype:
        dxp = np.empty((c, m + max_off), dtype=dy2.dtype)
    dxp.fill(0)
    taps = [(np.ascontiguousarray(weight[:, :, i, j].T), i * dh * wp + j * dw) for i in range(kh) for j in range(kw)]
    chunk = min(m, max(4096, (1 << 21) // ((c + o) * dy2.itemsize)))  # C + O rows of a chunk ≈ 2 MB
    slab = np.empty((c, chunk), dtype=dy2.dtype)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        for w_t, off in taps:  # kH·kW taps
            part = np.matmul(w_t, grid[:, s:e], out=slab[:, : e - s])  # (C, O) @ (O, chunk) -> (C, chunk)
            dxp[:, s + off : e + off] += part
    # (C, N·Hp·Wp) -> crop the padding -> (N, C, H, W)
    dx = np.empty(x_shape, dtype=dy2.dtype)
    np.copyto(dx, dxp[:, :m].reshape(c, n, hp, wp)[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3))
    return dx, grid, dxp


class Conv2d(Module):
    """2-D cross-correlation over NCHW images (what deep learning calls convolution).

    y[n, o, y, x] = b[o] + Σ_{c, i, j} W[o, c, i, j] · xp[n, c, y·sH + i·dH, x·sW + j·dW]

    where xp is x zero-padded by ``padding``. Twin: ``torch.nn.Conv2d`` (``groups=1``,
    ``padding_mode="zeros"``).

    Args:
        in_channels, out_channels: C and O.
        kernel_size, stride, padding, dilation: an int or a pair (height, width), as torch.
        bias: learn an additive per-channel bias (default True).
        dtype: parameter dtype (default float32).

    Shape: input (N, C, H, W) -> output (N, O, Ho, Wo),
        Ho = floor((H + 2·pH − dH·(kH − 1) − 1) / sH) + 1, likewise Wo.

    Attributes:
        weight: (O, C, kH, kW), init kaiming_uniform_(a=√5), i.e. U(−1/√K, 1/√K), K = C·kH·kW.
        bias: (O,), init U(−1/√K, 1/√K).
        needs_input_grad: whether ``backward`` computes dL/dx (default True). Set it False on a
            network's first layer when its input is data: ``backward`` then returns None and skips
            the W₂ᵀ dY product and col2im (as ``numpy_nn.Linear``; torch's ``ctx.needs_input_grad``).

    Memory: the layer keeps its column matrix (K, N·L) between forward and backward and reuses
    that buffer, and the one for its gradient, from one batch to the next (no fresh page faults).

    Example:
        >>> conv = Conv2d(1, 8, 3, stride=2, padding=1)
        >>> conv(np.zeros((4, 1, 64, 64), np.float32)).shape
        (4, 8, 32, 32)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        if isinstance(padding, str):
            raise NotImplementedError(f"padding={padding!r}: only integer padding is supported")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"invalid Conv2d geometry: kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}"
            )
        self.weight = Parameter(np.empty((out_channels, in_channels, *self.kernel_size), dtype=dtype))
        self.bias = Parameter(np.empty((out_channels,), dtype=dtype)) if bias else None
        self._cols = None  # (K, N·L) column buffer, refilled by every forward
        self._dcols = None  # (K, N·L) gradient-of-columns buffer, refilled by every backward
        self._y2 = None  # (O, N·L) product buffer: Y₂ in forward, dY₂ in backward
        self._grid = self._dxp = None  # the stride-1 input-gradient buffers (conv_input_grad_stride1)
        self.needs_input_grad = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight.shape)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    @staticmethod
    def _buffer(buf, shape, dtype):
        """Reuse ``buf`` when it already has this shape and dtype, else allocate."""
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
        return buf

    def forward(self, x):
        _check_dtype(x, self.weight.data, "Conv2d")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects input (N, {self.in_channels}, H, W), got shape {x.shape}")
        n, c, h, w = x.shape
        (kh, kw), o = self.kernel_size, self.out_channels
        ho = conv_output_size(h, kh, self.stride[0], self.padding[0], self.dilation[0])
        wo = conv_output_size(w, kw, self.stride[1], self.padding[1], self.dilation[1])
        self._cols = self._buffer(self._cols, (c * kh * kw, n * max(ho, 0) * max(wo, 0)), x.dtype)
        cols, (ho, wo) = im2col(x, self.kernel_size, self.stride, self.padding, self.dilation, out=self._cols)
        self._x_shape = x.shape
        w2 = self.weight.data.reshape(o, -1)  # (O, C, kH, kW) -> (O, K)
        self._y2 = self._buffer(self._y2, (o, cols.shape[1]), x.dtype)
        y2 = np.matmul(w2, cols, out=self._y2)  # (O, K) @ (K, N·L) -> (O, N·L): the whole batch in one product
        y = np.empty((n, o, ho, wo), dtype=x.dtype)
        y_onhw = y2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)  # (O, N·L) -> (N, O, Ho, Wo), a view
        if self.bias is not None:  # the copy to NCHW and the bias add in one pass
            np.add(y_onhw, self.bias.data[:, None, None], out=y)
        else:
            np.copyto(y, y_onhw)
        return y

    def backward(self, grad_output):
        # Y = W₂ · cols + b        W₂ (O, K)  cols (K, N·L)  Y (O, N·L)
        # db = Σ_{n,l} dY          -> (O,)
        # dW₂ = dY colsᵀ           (O, N·L)(N·L, K) -> (O, K) -> (O, C, kH, kW)
        # dcols = W₂ᵀ dY           (K, O)(O, N·L) -> (K, N·L)
        # dX = col2im(dcols)       (K, N·L) -> (N, C, H, W): each pixel sums the column entries
        #                          copied from it (convolution's gradient is a transposed convolution)
        n, o = grad_output.shape[0], self.out_channels
        # (N, O, Ho, Wo) -> (O, N, Ho, Wo) = (O, N·L): the layout of Y₂, one transposing copy
        self._y2 = self._buffer(self._y2, (o, self._cols.shape[1]), grad_output.dtype)
        dy = self._y2  # the forward's product buffer is free again: reuse it for dY₂
        np.copyto(dy.reshape(o, n, *grad_output.shape[2:]), grad_output.transpose(1, 0, 2, 3))
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=1))
        # computed as (cols dYᵀ)ᵀ: (K, N·L)(N·L, O) -> (K, O), BLAS reading dYᵀ in place, is the faster
        # orientation for this long inner dimension; the small (K, O) result is transposed after
        dw = np.matmul(self._cols, dy.T).T
        self.weight.accumulate_grad(np.ascontiguousarray(dw).reshape(self.weight.shape))
        if not self.needs_input_grad:
            return None
        if self.stride == (1, 1):  # same dX, computed tap by tap in cache (see conv_input_grad_stride1)
            dx, self._grid, self._dxp = conv_input_grad_stride1(
                dy, self.weight.data, self._x_shape, self.padding, self.dilation, self._grid, self._dxp)
            return dx
        w2 = self.weight.data.reshape(o, -1)
        self._dcols = self._buffer(self._dcols, self._cols.shape, grad_output.dtype)
        np.matmul(w2.T, dy, out=self._dcols)  # (K, O) @ (O, N·L) -> (K, N·L)
        return col2im(self._dcols, self._x_shape, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
