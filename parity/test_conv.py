"""Parity of numpy_nn.Conv2d (and its im2col / col2im) with torch.

Each grid case goes through ``assert_layer_parity``: torch's weights copied into numpy_nn, one
seeded input, one seeded random upstream gradient; output, input gradient, weight and bias
gradients compared by name, shape, dtype and value (float64 at torch's defaults, float32 at 5x).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import numpy_nn as nnp
from numpy_nn.conv import Conv2d, col2im, im2col
from parity.helpers import DTYPE_IDS, DTYPES, assert_close, assert_layer_parity, make_input

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    nnp.manual_seed(0)


# id -> (Conv2d kwargs, input shape (N, C_in, H, W)); C_out is always 4. A sampled grid: every
# kernel size (1, 3, 5, 2×3), stride (1, 2, pairs), padding (0, 1, 2, pairs), dilation (1, 2,
# pairs) and bias on/off appears, on odd and even sizes and with a batch of 1.
CASES = {
    "k1": (dict(kernel_size=1), (2, 3, 6, 5)),
    "k1-s2-nobias": (dict(kernel_size=1, stride=2, bias=False), (2, 3, 7, 7)),
    "k3-p1": (dict(kernel_size=3, padding=1), (2, 3, 8, 8)),
    "k3-p0-odd": (dict(kernel_size=3), (2, 3, 7, 9)),
    "k3-s2-p1": (dict(kernel_size=3, stride=2, padding=1), (2, 3, 9, 8)),
    "k3-s2-p0-odd": (dict(kernel_size=3, stride=2), (3, 2, 9, 11)),
    "k3-s3-p2": (dict(kernel_size=3, stride=3, padding=2), (2, 3, 10, 7)),
    "k3-d2-p2": (dict(kernel_size=3, padding=2, dilation=2), (2, 3, 7, 8)),
    "k3-d2-s2-nobias": (dict(kernel_size=3, stride=2, dilation=2, bias=False), (2, 2, 11, 9)),
    "k3-p1-batch1": (dict(kernel_size=3, padding=1), (1, 3, 5, 5)),
    "k5-p2": (dict(kernel_size=5, padding=2), (2, 2, 9, 7)),
    "k5-s2-p1-nobias": (dict(kernel_size=5, stride=2, padding=1, bias=False), (2, 3, 11, 10)),
    "k5-p0-batch1": (dict(kernel_size=5), (1, 2, 5, 6)),
    "k2x3": (dict(kernel_size=(2, 3)), (2, 3, 6, 7)),
    "k2x3-p(1,2)": (dict(kernel_size=(2, 3), padding=(1, 2)), (2, 3, 5, 6)),
    "k2x3-s(2,1)-p(0,1)": (dict(kernel_size=(2, 3), stride=(2, 1), padding=(0, 1)), (2, 3, 7, 7)),
    "k2x3-s(1,2)-d(2,1)-nobias": (dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), bias=False), (2, 2, 8, 9)),
    "k3-p(2,0)-d(1,2)": (dict(kernel_size=3, padding=(2, 0), dilation=(1, 2)), (1, 3, 6, 9)),
}


@dtypes
@pytest.mark.parametrize("case", list(CASES))
def test_conv2d(case, dtype):
    kwargs, shape = CASES[case]
    assert_layer_parity(Conv2d(shape[1], 4, **kwargs), nn.Conv2d(shape[1], 4, **kwargs), shape, dtype)


@dtypes
def test_conv2d_wider_channels(dtype):
    """More channels than the grid (K = 8·3·3 = 72 terms per dot product), as in the CNN."""
    assert_layer_parity(Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1), (3, 8, 10, 10), dtype)


@dtypes
def test_conv2d_without_input_grad(dtype):
    """needs_input_grad=False (a first layer fed with data): backward returns None, and the weight
    and bias gradients still equal torch's for an input that does not require grad."""
    conv = Conv2d(3, 4, 3, stride=2, padding=1)
    conv.needs_input_grad = False
    res = assert_layer_parity(conv, nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 8), dtype, input_grad=False)
    assert res["gx_np"] is None


def test_conv2d_default_init_matches_torch_bounds():
    # torch: kaiming_uniform_(a=√5) gives U(−1/√K, 1/√K) for weight and bias, K = C_in·kH·kW.
    conv = Conv2d(6, 200, (3, 5))
    bound = 1 / math.sqrt(6 * 3 * 5)
    assert conv.weight.shape == (200, 6, 3, 5) and conv.bias.shape == (200,)
    for p in (conv.weight.data, conv.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
    assert list(conv.state_dict()) == list(nn.Conv2d(6, 200, (3, 5)).state_dict())
    assert list(Conv2d(6, 2, 3, bias=False).state_dict()) == ["weight"]


@dtypes
def test_buffers_reused_across_batches_give_fresh_outputs(dtype):
    """The layer reuses its column buffers between calls: outputs must never alias them, a batch
    of another size must work, and the backward must use the latest forward's columns."""
    conv, ref = Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
    assert_layer_parity(conv, ref, (2, 3, 6, 6), dtype)  # copies ref's weights into conv
    x1, x2 = make_input((2, 3, 6, 6), dtype, seed=1), make_input((5, 3, 6, 6), dtype, seed=2)
    y1 = conv(x1)
    y1_copy = y1.copy()
    conv(x1 + 1)  # same shape: reuses the buffers
    np.testing.assert_array_equal(y1, y1_copy)
    ref.zero_grad()
    assert_layer_parity(conv, ref, x2.shape, dtype, x=x2, sync_weights=False)  # new batch size


@dtypes
@pytest.mark.parametrize(
    "geometry",
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 2), (1, 2)), ((5, 1), (3, 2), (2, 0), (2, 1))],
    ids=["k3-p1", "k2x3-s(2,1)-p(0,2)-d(1,2)", "k5x1-s(3,2)-p(2,0)-d(2,1)"],
)
def test_im2col_col2im_match_torch_unfold_fold(geometry, dtype):
    """im2col is torch's F.unfold (laid out (K, N·L) instead of (N, K, L)); col2im is F.fold."""
    kernel, stride, padding, dilation = geometry
    x = make_input((2, 3, 9, 8), dtype)
    cols, (ho, wo) = im2col(x, kernel, stride, padding, dilation)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    ref = F.unfold(torch.from_numpy(x), **kw)  # (N, K, L)
    assert_close(cols, ref.permute(1, 0, 2).reshape(cols.shape), "im2col", dtype)
    c = np.random.default_rng(3).standard_normal(cols.shape).astype(dtype)
    c_nkl = torch.from_numpy(c.reshape(c.shape[0], 2, ho * wo)).permute(1, 0, 2)  # (K, N·L) -> (N, K, L)
    assert_close(col2im(c, x.shape, kernel, stride, padding, dilation), F.fold(c_nkl, (9, 8), **kw), "col2im", dtype)


@pytest.mark.parametrize(
    "bad",
    [
        dict(x_shape=(2, 4, 8, 8), error=ValueError, match="expects input"),  # wrong channel count
        dict(x_shape=(3, 8, 8), error=ValueError, match="expects input"),  # no batch axis
        dict(x_shape=(2, 3, 2, 8), error=ValueError, match="smaller than the dilated kernel"),
    ],
    ids=["channels", "3d", "too-small"],
)
def test_conv2d_rejects_bad_input(bad):
    with pytest.raises(bad["error"], match=bad["match"]):
        Conv2d(3, 4, 3)(np.zeros(bad["x_shape"], np.float32))


def test_conv2d_rejects_mismatched_dtype():
    with pytest.raises(TypeError, match="dtype"):
        Conv2d(3, 4, 3)(np.zeros((1, 3, 5, 5), np.float64))
