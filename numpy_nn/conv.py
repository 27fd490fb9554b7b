"""2-D convolution by im2col + one matrix product, and its hand-written backward.

Twin: ``torch.nn.Conv2d`` (same positional arguments, NCHW layout, weight ``(C_out, C_in / groups, kH, kW)``).

Shape letters: N batch, C input channels, O output channels, H×W input size, Ho×Wo output size,
kH×kW kernel, K = C·kH·kW (one column's length), L = Ho·Wo (columns per image).

The idea: every output pixel is a dot product between the flattened weight of one output channel
(length K) and the K input values its receptive field covers. ``im2col`` lays the receptive
fields of the whole batch out as the columns of one (K, N·L) matrix, so the convolution is the
single product ``W (O, K) @ cols (K, N·L) -> (O, N·L)``, then one transposing copy to NCHW. The
backward is two more products and ``col2im``, which adds each column back onto the pixels it
was copied from. One large product instead of N small ones keeps BLAS efficient on small images
(8×8 late in a network) and costs only one thread hand-off per product. ``im2col`` and ``col2im``
live in ``numpy_nn.im2col``; padding modes in ``numpy_nn.padding``.

Two special cases skip the column matrix, which holds every input value kH·kW times:
a 1×1 stride-1 convolution is a plain matrix product per image on NCHW itself, and other stride-1
kernels run tap by tap on the padded input grid (``numpy_nn.conv_grid``), in cache-sized chunks.
Strided convolutions (and groups) use im2col.
"""

from __future__ import annotations

import math

import numpy as np

from . import init
from .conv_grid import dy_to_grid, grid_conv_backward, grid_conv_forward, grid_geometry, to_grid
from .im2col import _pair, col2im, conv_output_size, im2col, pad2d, windows
from .layers import _check_dtype
from .module import Module, Parameter
from .padding import PADDING_MODES, pad2d_mode, pad2d_mode_backward

__all__ = ["Conv2d", "conv_padding", "im2col", "col2im", "conv_output_size", "pad2d", "windows"]


def conv_padding(padding, kernel, stride, dilation) -> tuple[int, int, int, int]:
    """torch's padding argument -> (top, bottom, left, right), with torch's rules and messages.

    An int or a pair pads both sides equally. "valid" is no padding. "same" (stride 1 only) keeps
    the output size: along each axis the total d·(k − 1) is split as left = total // 2, right = the
    rest, so an even kernel pads one more at the bottom/right (what torch's F.conv2d does).
    """
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
        if padding == "valid":
            return 0, 0, 0, 0
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        (kh, kw), (dh, dw) = kernel, dilation
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding, "padding")
    return ph, ph, pw, pw


class Conv2d(Module):
    """2-D cross-correlation over NCHW images (what deep learning calls convolution).

    y[n, o, y, x] = b[o] + Σ_{c ∈ group(o), i, j} W[o, c, i, j] · xp[n, c, y·sH + i·dH, x·sW + j·dW]

    where xp is x padded by ``padding`` with ``padding_mode``, and group(o) is the slice of C / G
    input channels that output channel o's group reads (``groups`` = G; all C when G = 1,
    one channel per filter for a depthwise convolution, G = C). Twin: ``torch.nn.Conv2d``, same
    positional arguments.

    Args:
        in_channels, out_channels: C and O (both divisible by ``groups``).
        kernel_size, stride, dilation: an int or a pair (height, width), as torch.
        padding: an int, a pair, "valid" (none) or "same" (stride 1: output size = input size; an
            even dilated kernel pads one more at the bottom/right, as torch).
        groups: G; channels are split into G groups convolved separately (default 1).
        bias: learn an additive per-channel bias (default True).
        padding_mode: "zeros" (default), "reflect", "replicate" or "circular", as torch.
        device: None or "cpu" (NumPy arrays live in host memory).
        dtype: parameter dtype (default float32).

    Shape: input (N, C, H, W) or unbatched (C, H, W) -> output (N, O, Ho, Wo) or (O, Ho, Wo),
        Ho = floor((H + pT + pB − dH·(kH − 1) − 1) / sH) + 1, likewise Wo. N may be 0.

    Attributes:
        weight: (O, C / G, kH, kW), init kaiming_uniform_(a=√5), i.e. U(−1/√K, 1/√K),
            K = (C / G)·kH·kW.
        bias: (O,), init U(−1/√K, 1/√K).
        needs_input_grad: whether ``backward`` computes dL/dx (default True). Set it False on a
            network's first layer when its input is data: ``backward`` then returns None and skips
            the W₂ᵀ dY product and col2im (as ``numpy_nn.Linear``; torch's ``ctx.needs_input_grad``).

    Groups: im2col's rows are ordered (c, i, j), so the K/G rows of group g form one contiguous block
    and the G products ``W_g (O/G, K/G) @ cols_g (K/G, N·L)`` are one batched ``matmul`` of
    (G, O/G, K/G) by (G, K/G, N·L): no copy, no loop over groups.

    Padding other than symmetric zeros ("same" with an even kernel, or another ``padding_mode``)
    is applied first, explicitly, with ``numpy_nn.padding.pad2d_mode`` (torch does the same with
    ``F.pad``); the backward scatters the padded gradient back with its adjoint.

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
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=np.float32,
    ):
        super().__init__()
        if device not in (None, "cpu"):
            raise ValueError(f"numpy_nn keeps arrays in host memory: device must be None or 'cpu', got {device!r}")
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {set(PADDING_MODES)}, but got padding_mode='{padding_mode}'"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")  # torch keeps the string
        self.padding_mode = padding_mode
        self._pads = conv_padding(padding, self.kernel_size, self.stride, self.dilation)  # (top, bottom, left, right)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or min(self._pads) < 0:
            raise ValueError(
                f"invalid Conv2d geometry: kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}"
            )
        t, b, l, r = self._pads
        # pad explicitly before the convolution, or let im2col pad symmetric zeros on the fly
        self._explicit_pad = padding_mode != "zeros" or t != b or l != r
        self._im2col_padding = (0, 0) if self._explicit_pad else (t, l)
        # 1×1, stride 1, no padding, one group: a plain matrix product per image on NCHW itself
        self._pointwise = self.kernel_size == (1, 1) and self.stride == (1, 1) and self._pads == (0, 0, 0, 0) \
            and groups == 1
        # other stride-1 kernels, one group: tap by tap on the padded grid (numpy_nn.conv_grid), no im2col
        self._on_grid = self.stride == (1, 1) and groups == 1 and not self._pointwise
        self._xg = self._dyg = None  # the grid buffers: input and upstream gradient (conv_grid)
        dtype = np.float32 if dtype is None else dtype
        self.weight = Parameter(np.empty((out_channels, in_channels // groups, *self.kernel_size), dtype=dtype))
        self.bias = Parameter(np.empty((out_channels,), dtype=dtype)) if bias else None
        self._cols = None  # (K, N·L) column buffer, refilled by every forward
        self._dcols = None  # (K, N·L) gradient-of-columns buffer, refilled by every backward
        self._y2 = None  # (O, N·L) product buffer: Y₂ in forward, dY₂ in backward
        self._dxp = None  # the padded input-gradient buffer (conv_grid.grid_conv_backward)
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

    def _grouped(self, a: np.ndarray) -> np.ndarray:
        """(G·R, M) -> (G, R, M), a view: the rows of each group are one contiguous block."""
        return a.reshape(self.groups, a.shape[0] // self.groups, a.shape[1])

    def forward(self, x):
        _check_dtype(x, self.weight.data, "Conv2d")
        if x.ndim not in (3, 4) or x.shape[-3] != self.in_channels:
            c = self.in_channels
            raise ValueError(f"Conv2d expects input (N, {c}, H, W) or unbatched ({c}, H, W), got shape {x.shape}")
        self._unbatched = x.ndim == 3
        if self._unbatched:
            x = x[None]  # (C, H, W) -> (1, C, H, W), a view
        self._x_in_shape = x.shape
        if self._explicit_pad:
            x = pad2d_mode(x, self._pads, self.padding_mode)  # (N, C, H, W) -> (N, C, Hp, Wp)
        y = self._conv_forward(x)
        return y[0] if self._unbatched else y

    def _pointwise_forward(self, x):
        # y[n] = W₂ (O, C) @ x[n] (C, H·W): NCHW already holds every image as a (C, H·W) matrix, so
        # one batched product writes (N, O, H·W) = NCHW output directly: no im2col, no transposes.
        n, c, h, w = x.shape
        o = self.out_channels
        self._x3 = x.reshape(n, c, h * w)  # a view (a copy only for a non-contiguous x); kept for backward
        y = np.empty((n, o, h, w), dtype=x.dtype)
        np.matmul(self.weight.data.reshape(o, c), self._x3, out=y.reshape(n, o, h * w))
        if self.bias is not None:
            y += self.bias.data[:, None, None]
        return y

    def _pointwise_backward(self, grad_output):
        # Y[n] = W₂ X[n] + b     W₂ (O, C)  X[n] (C, L)  Y[n] (O, L), L = H·W
        # db = Σ_{n,l} dY[n]                      -> (O,)
        # dW₂ = Σ_n dY[n] X[n]ᵀ                    (N, O, L)(N, L, C) -> (N, O, C), summed over N
        # dX[n] = W₂ᵀ dY[n]                        (C, O)(N, O, L) -> (N, C, L) = NCHW
        n, o = grad_output.shape[:2]
        x3 = self._x3
        dy3 = grad_output.reshape(n, o, x3.shape[2])
        if self.bias is not None:
            self.bias.accumulate_grad(dy3.sum(axis=(0, 2)))
        dw = np.matmul(dy3, x3.transpose(0, 2, 1)).sum(axis=0) if n else np.zeros((o, x3.shape[1]), x3.dtype)
        self.weight.accumulate_grad(dw.reshape(self.weight.shape))
        if not self.needs_input_grad:
            return None
        dx = np.matmul(self.weight.data.reshape(o, -1).T, dy3)  # (C, O) @ (N, O, L) -> (N, C, L)
        return dx.reshape(n, x3.shape[1], *grad_output.shape[2:])

    def _grid_forward(self, x, ho, wo):
        # Y = Σ_taps W_ij · xg shifted by off_ij (numpy_nn.conv_grid): the grid is kept for backward
        self._x_shape = x.shape
        self._geometry = grid_geometry(x.shape, self.kernel_size, self._im2col_padding, self.dilation)
        self._xg = to_grid(x, self._im2col_padding, self._geometry[5], out=self._xg)
        y = np.empty((x.shape[0], self.out_channels, ho, wo), dtype=x.dtype)
        grid_conv_forward(self._xg, self.weight.data, self._geometry, y)
        if self.bias is not None:
            y += self.bias.data[:, None, None]
        return y

    def _grid_backward(self, grad_output):
        # dY onto the grid once; then dW and dX together, chunk by chunk (conv_grid.grid_conv_backward)
        self._dyg = dy_to_grid(grad_output, self._geometry, out=self._dyg)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_output.sum(axis=(0, 2, 3)))
        dw, dx, self._dxp = grid_conv_backward(self._dyg, self._xg, self.weight.data, self._geometry, self._x_shape,
                                               self._im2col_padding, self.needs_input_grad, self._dxp)
        self.weight.accumulate_grad(dw)
        return dx

    def _conv_forward(self, x):
        if self._pointwise:
            return self._pointwise_forward(x)
        n, c, h, w = x.shape
        (kh, kw), o, pad = self.kernel_size, self.out_channels, self._im2col_padding
        ho = conv_output_size(h, kh, self.stride[0], pad[0], self.dilation[0])
        wo = conv_output_size(w, kw, self.stride[1], pad[1], self.dilation[1])
        if self._on_grid and ho >= 1 and wo >= 1:
            return self._grid_forward(x, ho, wo)
        self._cols = self._buffer(self._cols, (c * kh * kw, n * max(ho, 0) * max(wo, 0)), x.dtype)
        cols, (ho, wo) = im2col(x, self.kernel_size, self.stride, pad, self.dilation, out=self._cols)
        self._x_shape = x.shape
        self._y2 = self._buffer(self._y2, (o, cols.shape[1]), x.dtype)
        if self.groups == 1:
            w2 = self.weight.data.reshape(o, -1)  # (O, C, kH, kW) -> (O, K)
            y2 = np.matmul(w2, cols, out=self._y2)  # (O, K) @ (K, N·L) -> (O, N·L): the whole batch in one product
        else:  # (G, O/G, K/G) @ (G, K/G, N·L) -> (G, O/G, N·L) = (O, N·L)
            np.matmul(self.weight.data.reshape(self.groups, o // self.groups, -1), self._grouped(cols),
                      out=self._grouped(self._y2))
            y2 = self._y2
        y = np.empty((n, o, ho, wo), dtype=x.dtype)
        y_onhw = y2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)  # (O, N·L) -> (N, O, Ho, Wo), a view
        if self.bias is not None:  # the copy to NCHW and the bias add in one pass
            np.add(y_onhw, self.bias.data[:, None, None], out=y)
        else:
            np.copyto(y, y_onhw)
        return y

    def backward(self, grad_output):
        if self._unbatched:
            grad_output = grad_output[None]  # (O, Ho, Wo) -> (1, O, Ho, Wo)
        dx = self._conv_backward(grad_output)
        if dx is None:
            return None
        if self._explicit_pad:  # y = conv(pad(x)): the padded positions' gradient goes back to the pixels they copy
            dx = pad2d_mode_backward(dx, self._pads, self.padding_mode, self._x_in_shape)
        return dx[0] if self._unbatched else dx

    def _conv_backward(self, grad_output):
        # Y = W₂ · cols + b        W₂ (O, K)  cols (K, N·L)  Y (O, N·L)
        # db = Σ_{n,l} dY          -> (O,)
        # dW₂ = dY colsᵀ           (O, N·L)(N·L, K) -> (O, K) -> (O, C, kH, kW)
        # dcols = W₂ᵀ dY           (K, O)(O, N·L) -> (K, N·L)
        # dX = col2im(dcols)       (K, N·L) -> (N, C, H, W): each pixel sums the column entries
        #                          copied from it (convolution's gradient is a transposed convolution)
        # With G groups each group g is the same with W_g (O/G, K/G), cols_g, dY_g: dW_g = dY_g cols_gᵀ,
        # dcols_g = W_gᵀ dY_g, as batched products over the leading G axis. An empty batch (N = 0)
        # gives sums over nothing: dW = 0, db = 0, dX empty.
        if self._pointwise:
            return self._pointwise_backward(grad_output)
        if self._on_grid:
            return self._grid_backward(grad_output)
        n, o, g = grad_output.shape[0], self.out_channels, self.groups
        # (N, O, Ho, Wo) -> (O, N, Ho, Wo) = (O, N·L): the layout of Y₂, one transposing copy
        self._y2 = self._buffer(self._y2, (o, self._cols.shape[1]), grad_output.dtype)
        dy = self._y2  # the forward's product buffer is free again: reuse it for dY₂
        np.copyto(dy.reshape(o, n, *grad_output.shape[2:]), grad_output.transpose(1, 0, 2, 3))
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=1))
        if g == 1:
            # computed as (cols dYᵀ)ᵀ: (K, N·L)(N·L, O) -> (K, O), BLAS reading dYᵀ in place, is the faster
            # orientation for this long inner dimension; the small (K, O) result is transposed after
            dw = np.matmul(self._cols, dy.T).T
        else:  # (G, K/G, N·L) @ (G, N·L, O/G) -> (G, K/G, O/G), transposed to (G, O/G, K/G)
            dw = np.matmul(self._grouped(self._cols), self._grouped(dy).transpose(0, 2, 1)).transpose(0, 2, 1)
        self.weight.accumulate_grad(np.ascontiguousarray(dw).reshape(self.weight.shape))
        if not self.needs_input_grad:
            return None
        self._dcols = self._buffer(self._dcols, self._cols.shape, grad_output.dtype)
        w3 = self.weight.data.reshape(g, o // g, -1)  # (G, O/G, K/G)
        np.matmul(w3.transpose(0, 2, 1), self._grouped(dy), out=self._grouped(self._dcols))  # (G, K/G, N·L)
        return col2im(self._dcols, self._x_shape, self.kernel_size, self.stride, self._im2col_padding, self.dilation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
