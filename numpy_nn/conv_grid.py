"""Stride-1 convolution on the padded grid: forward, weight and input gradients with no im2col.

Used by ``numpy_nn.conv.Conv2d`` for stride-1 kernels larger than 1×1 (one group). Shape letters
as in ``numpy_nn.conv``; T = kH·kW taps, Hp×Wp the padded input, M = N·Hp·Wp grid positions.

The padded-grid trick. Lay the zero-padded input out channel-major, ``xg`` (C, N·Hp·Wp + max_off)
(``to_grid``: one transposing copy, (N, C, H, W) -> (C, N, Hp, Wp), plus a zero tail), and index
every output position by where its window starts, q = n·Hp·Wp + y·Wp + x. With stride 1 the
pixel that kernel tap (i, j) of output q reads is then q + off_ij, off_ij = i·dH·Wp + j·dW, for
every image at once, so each tap of the convolution is a matrix product over a *shifted
contiguous slice* of the grid:

    Y[o, q]          = Σ_{ij} Σ_c W[o, c, i, j] · xg[c, q + off_ij]          (forward)
    dW[o, c, i, j]   = Σ_q dY[o, q] · xg[c, q + off_ij]                      (weight gradient)
    dXp[c, p]        = Σ_{ij} Σ_o W[o, c, i, j] · dY[o, p − off_ij]          (input gradient)

Grid positions with y ≥ Ho or x ≥ Wo are not outputs: the forward computes and drops them, the
backward gives them dY = 0 so they add nothing. Against im2col, the (K, N·L) column matrix (K =
C·T, T times the input: 231 MB for a DenseNet 3×3 layer at batch 16) is never written: everything
runs in column chunks of a few MB that stay in cache while all T taps use them.
"""

from __future__ import annotations

import numpy as np


def grid_geometry(x_shape, kernel, padding, dilation):
    """(Hp, Wp, Ho, Wo, M, max_off, offsets) of a stride-1 convolution on the padded grid."""
    n, _, h, w = x_shape
    (kh, kw), (ph, pw), (dh, dw) = kernel, padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = hp - dh * (kh - 1), wp - dw * (kw - 1)
    offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]  # tap (i, j) in C order
    return hp, wp, ho, wo, n * hp * wp, offsets[-1], offsets


def to_grid(x: np.ndarray, padding, max_off: int, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) -> (C, N·Hp·Wp + max_off): zero-padded, channel-major, with a zero tail.

    ``out`` (right shape and dtype) is reused: only the interior is written, so its zero padding
    and tail, written when it was allocated, stay zero.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    hp, wp = h + 2 * ph, w + 2 * pw
    shape = (c, n * hp * wp + max_off)
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = np.zeros(shape, dtype=x.dtype)
    np.copyto(out[:, : n * hp * wp].reshape(c, n, hp, wp)[:, :, ph : ph + h, pw : pw + w], x.transpose(1, 0, 2, 3))
    return out


def _chunk(m: int, rows: int, itemsize: int, max_off: int) -> int:
    """Grid columns per chunk: ``rows`` rows of it ≈ 4 MB (cache), at least 8·max_off (so the
    max_off extra columns a chunk reads stay a small overhead); at least 1 (N = 0)."""
    return max(1, min(m, max(8 * max_off, 2048, (4 << 20) // (rows * itemsize))))


def grid_conv_forward(xg: np.ndarray, weight: np.ndarray, geometry, out_nchw: np.ndarray) -> np.ndarray:
    """Y = Σ_taps W_ij @ xg[:, q + off_ij], written as NCHW into ``out_nchw`` (N, O, Ho, Wo).

    Per chunk of grid columns, one product of all taps' weights stacked,
    Z = W_all (T·O, C) @ xg[:, s : e + max_off] -> (T·O, chunk + max_off), then the T shifted
    slices of Z are summed: Y[:, s:e] = Σ_t Z[t, :, off_t : off_t + chunk]. One large product
    (T·O rows) keeps BLAS efficient even for few output channels (O = 32 in DenseNet).
    """
    hp, wp, ho, wo, m, max_off, offsets = geometry
    o, c = weight.shape[:2]
    t = len(offsets)
    n = out_nchw.shape[0]
    w_all = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(t * o, c)  # rows (i, j, o)
    yg = np.empty((o, m), dtype=xg.dtype)  # Y on the grid
    chunk = _chunk(m, t * o + c, xg.itemsize, max_off)
    z = np.empty((t * o, chunk + max_off), dtype=xg.dtype)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        zc = np.matmul(w_all, xg[:, s : e + max_off], out=z[:, : e - s + max_off]).reshape(t, o, -1)
        acc = yg[:, s:e]
        np.copyto(acc, zc[0, :, : e - s])  # offsets[0] = 0
        for k in range(1, t):
            acc += zc[k, :, offsets[k] : offsets[k] + e - s]
    # (O, N·Hp·Wp) -> keep the output positions -> (N, O, Ho, Wo)
    np.copyto(out_nchw, yg.reshape(o, n, hp, wp)[:, :, :ho, :wo].transpose(1, 0, 2, 3))
    return out_nchw


def dy_to_grid(grad_output: np.ndarray, geometry, out: np.ndarray | None = None) -> np.ndarray:
    """(N, O, Ho, Wo) -> (O, max_off + N·Hp·Wp): dY on the grid after a zero head of max_off
    columns, zero at every position that is not an output (so shifted reads need no bounds)."""
    hp, wp, ho, wo, m, max_off, _ = geometry
    n, o = grad_output.shape[:2]
    if out is None or out.shape != (o, max_off + m) or out.dtype != grad_output.dtype:
        out = np.zeros((o, max_off + m), dtype=grad_output.dtype)
    np.copyto(out[:, max_off:].reshape(o, n, hp, wp)[:, :, :ho, :wo], grad_output.transpose(1, 0, 2, 3))
    return out


def grid_conv_backward(dyg, xg, weight, geometry, x_shape, padding, need_dx: bool = True, dxp=None):
    """dW and dX of a stride-1 convolution from dY on the grid (``dy_to_grid``) and the forward's grid.

    Both gradients read dY shifted *back* by each tap: with p = q + off_t a padded-input position,

        dW[o, c, t] = Σ_p dY[o, p − off_t] · xg[c, p]        dXp[c, p] = Σ_{t, o} W[o, c, t] · dY[o, p − off_t]

    (positions p − off_t before the grid or off the outputs carry dY = 0: the zero head and the
    zero non-output positions make both sums exact). So per chunk of p, the T shifted slices of dY
    are stacked once, D (T·O, chunk), and serve two products:

        dW_all (T·O, C) += D @ xg[:, chunk]ᵀ         dXp[:, chunk] = W_allᵀ (C, T·O) @ D

    each with a long inner dimension (chunk, then T·O) that BLAS runs efficiently, and dXp is
    written once, never accumulated. ``dxp``: an optional reusable (C, M) buffer.
    Returns (dW (O, C, kH, kW), dX (N, C, H, W) or None, dxp).
    """
    n, c, h, w = x_shape
    o, _, kh, kw = weight.shape
    hp, wp, _, _, m, max_off, offsets = geometry
    ph, pw = padding
    t = len(offsets)
    w_all_t = np.ascontiguousarray(weight.transpose(1, 2, 3, 0)).reshape(c, t * o)  # W_allᵀ: columns (i, j, o)
    dw_all = np.zeros((t * o, c), dtype=dyg.dtype)
    if need_dx and (dxp is None or dxp.shape != (c, m) or dxp.dtype != dyg.dtype):
        dxp = np.empty((c, m), dtype=dyg.dtype)
    chunk = _chunk(m, t * o + 2 * c, dyg.itemsize, max_off)
    d = np.empty((t, o, chunk), dtype=dyg.dtype)
    part = np.empty((t * o, c), dtype=dyg.dtype)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        dc = d[:, :, : e - s]
        for k, off in enumerate(offsets):  # D[t] = dY[:, p − off_t] for p in the chunk
            np.copyto(dc[k], dyg[:, max_off + s - off : max_off + e - off])
        d2 = dc.reshape(t * o, e - s) if e - s == chunk else np.ascontiguousarray(dc).reshape(t * o, e - s)
        dw_all += np.matmul(d2, xg[:, s:e].T, out=part)  # (T·O, chunk) @ (chunk, C)
        if need_dx:
            np.matmul(w_all_t, d2, out=dxp[:, s:e])  # (C, T·O) @ (T·O, chunk)
    # (T·O, C) = (kH, kW, O, C) -> (O, C, kH, kW)
    dw = np.ascontiguousarray(dw_all.reshape(kh, kw, o, c).transpose(2, 3, 0, 1))
    if not need_dx:
        return dw, None, dxp
    # (C, N·Hp·Wp) -> crop the padding -> (N, C, H, W)
    dx = np.empty(x_shape, dtype=dyg.dtype)
    np.copyto(dx, dxp.reshape(c, n, hp, wp)[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3))
    return dw, dx, dxp
