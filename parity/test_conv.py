"""Parity of numpy_nn.Conv2d (and its im2col / col2im) with torch.

Each grid case goes through ``assert_layer_parity``: torch's weights copied into numpy_nn, one
seeded input, one seeded random upstream gradient; output, input gradient, weight and bias
gradients compared by name, shape, dtype and value (float64 at torch's defaults, float32 at 5x).
"""

from __future__ import annotations

import inspect
import math
import re

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
        dict(x_shape=(4, 8, 8), error=ValueError, match="expects input"),  # unbatched, wrong channel count
        dict(x_shape=(3, 8), error=ValueError, match="expects input"),  # 2-D
        dict(x_shape=(1, 2, 3, 8, 8), error=ValueError, match="expects input"),  # 5-D
        dict(x_shape=(2, 3, 2, 8), error=ValueError, match="smaller than the dilated kernel"),
    ],
    ids=["channels", "3d-channels", "2d", "5d", "too-small"],
)
def test_conv2d_rejects_bad_input(bad):
    with pytest.raises(bad["error"], match=bad["match"]):
        Conv2d(3, 4, 3)(np.zeros(bad["x_shape"], np.float32))


def test_conv2d_rejects_mismatched_dtype():
    with pytest.raises(TypeError, match="dtype"):
        Conv2d(3, 4, 3)(np.zeros((1, 3, 5, 5), np.float64))


# -- torch's signature, groups, padding strings and modes, empty and unbatched input (issue 10 §7) ----


def test_conv2d_signature_is_torchs():
    """Same parameter names in the same order, same defaults (dtype: None means float32 in both)."""
    ours, theirs = inspect.signature(Conv2d).parameters, inspect.signature(nn.Conv2d).parameters
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        if name != "dtype":
            assert ours[name].default == p.default, name
    assert Conv2d(3, 4, 3, dtype=None).weight.dtype == np.float32


@dtypes
def test_conv2d_torch_positional_arguments(dtype):
    """The reproduction: torch's positional order (..., dilation, groups, bias, padding_mode)."""
    args = (3, 4, (3, 2), 1, 0, 1, 1, False)
    conv = Conv2d(*args)
    assert conv.bias is None and conv.groups == 1
    assert_layer_parity(conv, nn.Conv2d(*args), (2, 3, 6, 5), dtype)
    args = (4, 6, 3, 2, 1, 1, 2, True, "reflect")
    assert_layer_parity(Conv2d(*args), nn.Conv2d(*args), (2, 4, 7, 6), dtype)


# id -> (Conv2d positional (C_in, C_out, kernel), kwargs, input shape)
GROUP_CASES = {
    "g2-k3-p1": ((4, 6, 3), dict(groups=2, padding=1), (2, 4, 6, 7)),
    "g3-k1": ((6, 3, 1), dict(groups=3), (2, 6, 5, 4)),
    "g2-k2x3-s2-d(1,2)-nobias": ((4, 4, (2, 3)), dict(groups=2, stride=2, dilation=(1, 2), bias=False), (2, 4, 9, 9)),
    "depthwise-k3-p1": ((4, 4, 3), dict(groups=4, padding=1), (2, 4, 6, 7)),
    "depthwise-x2-k3-s2": ((3, 6, 3), dict(groups=3, stride=2), (2, 3, 7, 8)),
    "depthwise-k5-p2-s(1,2)-batch1": ((2, 2, 5), dict(groups=2, padding=2, stride=(1, 2)), (1, 2, 6, 9)),
}


@dtypes
@pytest.mark.parametrize("case", list(GROUP_CASES))
def test_conv2d_groups(case, dtype):
    args, kwargs, shape = GROUP_CASES[case]
    conv = Conv2d(*args, **kwargs)
    assert conv.weight.shape == (args[1], args[0] // kwargs["groups"], *conv.kernel_size)
    assert_layer_parity(conv, nn.Conv2d(*args, **kwargs), shape, dtype)


PADDING_CASES = {
    "same-k3": ((3, 4, 3), dict(padding="same"), (2, 3, 6, 7)),
    "same-k(3,2)-even": ((3, 4, (3, 2)), dict(padding="same"), (2, 3, 6, 7)),
    "same-k4-d(1,2)": ((3, 4, 4), dict(padding="same", dilation=(1, 2)), (2, 3, 9, 8)),
    "same-k2-d3": ((3, 4, 2), dict(padding="same", dilation=3), (2, 3, 8, 9)),
    "same-k4-g2": ((4, 2, 4), dict(padding="same", groups=2), (2, 4, 7, 6)),
    "valid-k3": ((3, 4, 3), dict(padding="valid"), (2, 3, 6, 7)),
    "valid-k3-s2": ((3, 4, 3), dict(padding="valid", stride=2), (2, 3, 7, 8)),
    "reflect-p1": ((3, 4, 3), dict(padding=1, padding_mode="reflect"), (2, 3, 5, 6)),
    "reflect-p(2,3)-s2": ((3, 4, 3), dict(padding=(2, 3), padding_mode="reflect", stride=2), (2, 3, 5, 6)),
    "reflect-same-k(2,4)-g2": ((4, 4, (2, 4)), dict(padding="same", padding_mode="reflect", groups=2), (2, 4, 5, 6)),
    "replicate-p(1,3)-s2": ((3, 4, 3), dict(padding=(1, 3), padding_mode="replicate", stride=2), (2, 3, 5, 6)),
    "replicate-p4-k5-larger-than-input": ((2, 3, 5), dict(padding=4, padding_mode="replicate"), (2, 2, 3, 3)),
    "circular-p(2,1)": ((3, 4, 3), dict(padding=(2, 1), padding_mode="circular"), (2, 3, 5, 6)),
    "circular-p3-full-wrap-d2": ((2, 3, 3), dict(padding=3, padding_mode="circular", dilation=2), (2, 2, 3, 4)),
    "circular-same-k4": ((3, 4, 4), dict(padding="same", padding_mode="circular"), (2, 3, 6, 5)),
}


@dtypes
@pytest.mark.parametrize("case", list(PADDING_CASES))
def test_conv2d_padding_strings_and_modes(case, dtype):
    args, kwargs, shape = PADDING_CASES[case]
    res = assert_layer_parity(Conv2d(*args, **kwargs), nn.Conv2d(*args, **kwargs), shape, dtype)
    if kwargs.get("padding") == "same":
        assert res["y_np"].shape[2:] == shape[2:]


@pytest.mark.parametrize(
    "kwargs",
    [dict(padding="same", stride=2), dict(padding="same", stride=(1, 2)), dict(padding="full"),
     dict(padding_mode="bogus"), dict(groups=0), dict(groups=2), dict(groups=3, bias=False)],
    ids=["same-strided", "same-strided-w", "bad-string", "bad-mode", "groups0", "groups-in", "groups-out"],
)
def test_conv2d_rejects_what_torch_rejects(kwargs):
    """Same exception type and message as torch's constructor (C_in 3, C_out 4)."""
    with pytest.raises(ValueError) as t_err:
        nn.Conv2d(3, 4, 3, **kwargs)
    with pytest.raises(ValueError) as np_err:
        Conv2d(3, 4, 3, **kwargs)

    def sets_sorted(message):  # "{'b', 'a'}" -> "['a', 'b']": a set's printed order varies from run to run
        return re.sub(r"\{[^}]*\}", lambda m: str(sorted(m.group()[1:-1].split(", "))), message)

    assert sets_sorted(str(np_err.value)) == sets_sorted(str(t_err.value))


@pytest.mark.parametrize(
    "mode, padding, match",
    [("reflect", 3, "Padding size should be less than the corresponding input dimension"),
     ("reflect", (0, 4), "Padding size should be less than"),
     ("circular", (4, 0), "wrapping around more than once")],
)
def test_conv2d_padding_mode_limits_like_torch(mode, padding, match):
    """reflect needs padding < size, circular padding <= size: torch refuses in F.pad, so do we."""
    x = make_input((1, 2, 3, 4), np.float32)
    with pytest.raises(RuntimeError, match=match):
        nn.Conv2d(2, 2, 3, padding=padding, padding_mode=mode)(torch.from_numpy(x))
    with pytest.raises(ValueError, match=match):
        Conv2d(2, 2, 3, padding=padding, padding_mode=mode)(x)


EMPTY_CASES = {
    "k3-p1-stride1": ((3, 4, 3), dict(padding=1)),
    "k3-s2": ((3, 4, 3), dict(stride=2)),
    "k1": ((3, 4, 1), {}),
    "g3-depthwise": ((3, 3, 3), dict(groups=3, padding=1)),
    "reflect-same": ((3, 4, 3), dict(padding="same", padding_mode="reflect")),
}


@dtypes
@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_conv2d_empty_batch(case, dtype):
    """N = 0 (the reproduction crashed in the stride-1 input gradient): an empty output and input
    gradient, and weight and bias gradients of zeros, as torch."""
    args, kwargs = EMPTY_CASES[case]
    conv = Conv2d(*args, **kwargs)
    res = assert_layer_parity(conv, nn.Conv2d(*args, **kwargs), (0, 3, 6, 5), dtype)
    assert res["gx_np"].shape == (0, 3, 6, 5)
    assert conv.weight.grad.shape == conv.weight.shape and not conv.weight.grad.any()


UNBATCHED_CASES = {
    "k3-p1": ((3, 4, 3), dict(padding=1)),
    "k3-s2-p1": ((3, 4, 3), dict(stride=2, padding=1)),
    "g3-same-reflect": ((3, 6, 4), dict(groups=3, padding="same", padding_mode="reflect")),
}


@dtypes
@pytest.mark.parametrize("case", list(UNBATCHED_CASES))
def test_conv2d_unbatched_input(case, dtype):
    """(C, H, W) -> (O, Ho, Wo), gradient (C, H, W), as torch."""
    args, kwargs = UNBATCHED_CASES[case]
    res = assert_layer_parity(Conv2d(*args, **kwargs), nn.Conv2d(*args, **kwargs), (3, 7, 6), dtype)
    assert res["y_np"].ndim == 3 and res["gx_np"].shape == (3, 7, 6)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
def test_pad2d_mode_matches_torch_pad(mode):
    """numpy_nn.padding's forward is F.pad's, and its backward F.pad's gradient (random upstream)."""
    from numpy_nn.padding import pad2d_mode, pad2d_mode_backward

    x = make_input((2, 3, 4, 5), np.float64)
    pads = (3, 1, 0, 4)  # top, bottom, left, right
    xt = torch.tensor(x, requires_grad=True)
    ref = F.pad(xt, (pads[2], pads[3], pads[0], pads[1]), mode="constant" if mode == "zeros" else mode)
    y = pad2d_mode(x, pads, mode)
    assert_close(y, ref, "pad", np.float64)
    g = np.random.default_rng(1).standard_normal(y.shape)
    ref.backward(torch.from_numpy(g))
    assert_close(pad2d_mode_backward(g, pads, mode, x.shape), xt.grad, "pad backward", np.float64)
