"""Parity of MaxPool2d, AvgPool2d and AdaptiveAvgPool2d with torch, ties included.

Max pooling's gradient is decided by the tie rule: when several elements of a window share the
maximum, torch sends the window's gradient to the first one in row-major scan order. Integer-valued
and constant inputs, with overlapping windows (stride < kernel) and −∞ padding, pin that rule down.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from numpy_nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from parity.helpers import DTYPE_IDS, DTYPES, assert_layer_parity

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)

# id -> (kernel_size, stride, padding, input shape)
POOL_CASES = {
    "k2": (2, None, 0, (2, 3, 8, 8)),
    "k2-odd": (2, None, 0, (2, 3, 7, 9)),
    "k3-s2-p1": (3, 2, 1, (2, 3, 9, 8)),
    "k3-s1-overlap": (3, 1, 0, (2, 2, 6, 7)),
    "k3-s1-p1-overlap": (3, 1, 1, (1, 2, 5, 5)),
    "k2x3-s(1,2)": ((2, 3), (1, 2), 0, (2, 2, 6, 9)),
    "k(3,2)-s(2,1)-p(1,0)": ((3, 2), (2, 1), (1, 0), (2, 3, 7, 6)),
    "k2-batch1": (2, None, 0, (1, 4, 4, 6)),
}
pool_cases = pytest.mark.parametrize("case", list(POOL_CASES))


@dtypes
@pool_cases
def test_maxpool2d(case, dtype):
    k, s, p, shape = POOL_CASES[case]
    assert_layer_parity(MaxPool2d(k, s, p), nn.MaxPool2d(k, s, p), shape, dtype)


@dtypes
@pool_cases
def test_avgpool2d(case, dtype):
    # torch's defaults: count_include_pad=True (padded zeros count in the divisor)
    k, s, p, shape = POOL_CASES[case]
    assert_layer_parity(AvgPool2d(k, s, p), nn.AvgPool2d(k, s, p), shape, dtype)


# inputs with exact ties: id -> function of (shape, seed)
TIE_INPUTS = {
    "int0-2": lambda shape, seed: np.random.default_rng(seed).integers(0, 3, size=shape).astype(float),
    "binary": lambda shape, seed: np.random.default_rng(seed).integers(0, 2, size=shape).astype(float),
    "constant": lambda shape, seed: np.full(shape, 1.5),
    "constant-negative": lambda shape, seed: np.full(shape, -4.0),  # must beat the −∞ padding
    "zeros": lambda shape, seed: np.zeros(shape),
}


@dtypes
@pytest.mark.parametrize("inputs", list(TIE_INPUTS))
@pytest.mark.parametrize("case", ["k2", "k3-s2-p1", "k3-s1-overlap", "k3-s1-p1-overlap", "k2x3-s(1,2)"])
def test_maxpool2d_ties_follow_torch(case, inputs, dtype):
    """Exact ties: the gradient must land on exactly the elements torch picks (first maximum)."""
    k, s, p, shape = POOL_CASES[case]
    x = TIE_INPUTS[inputs](shape, 0).astype(dtype)
    res = assert_layer_parity(MaxPool2d(k, s, p), nn.MaxPool2d(k, s, p), shape, dtype, x=x)
    # and the gradient is where torch's argmax indices are, bit for bit
    np.testing.assert_array_equal(res["gx_np"] != 0, res["x_t"].grad.numpy() != 0)


def test_maxpool2d_tie_rule_by_hand():
    """A hand-checked case: in [[1, 1], [1, 1]] the first (top-left) element takes the gradient;
    with overlapping 2×2 windows of stride 1 on a constant row, each window's first element does."""
    pool = MaxPool2d(2)
    pool(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(pool.backward(np.full((1, 1, 1, 1), 3.0))[0, 0], [[3.0, 0.0], [0.0, 0.0]])
    pool = MaxPool2d((1, 2), stride=1)
    pool(np.zeros((1, 1, 1, 4)))
    np.testing.assert_array_equal(pool.backward(np.array([[[[1.0, 2.0, 4.0]]]]))[0, 0], [[1.0, 2.0, 4.0, 0.0]])


@dtypes
@pytest.mark.parametrize("output_size", [1, (1, 1)], ids=["1", "(1,1)"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 1), (3, 2, 8, 8)], ids=["odd", "1x1", "8x8"])
def test_adaptive_avgpool2d(output_size, shape, dtype):
    assert_layer_parity(AdaptiveAvgPool2d(output_size), nn.AdaptiveAvgPool2d(output_size), shape, dtype)


def test_adaptive_avgpool2d_rejects_other_sizes():
    with pytest.raises(NotImplementedError, match="output_size"):
        AdaptiveAvgPool2d(2)


@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d], ids=["max", "avg"])
def test_pooling_keeps_float32_and_rejects_bad_geometry(pool):
    y = pool(2)(np.ones((1, 1, 4, 4), np.float32))
    assert y.dtype == np.float32 and y.shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="half of effective kernel"):
        pool(2, padding=2)(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="too small"):
        pool(3)(np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        pool(2)(np.ones((4, 4), np.float32))


def test_maxpool2d_nan_propagates_like_torch():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y = MaxPool2d(2)(x)
    ref = nn.MaxPool2d(2)(torch.from_numpy(x))
    np.testing.assert_array_equal(np.isnan(y), torch.isnan(ref).numpy())
    np.testing.assert_array_equal(np.nan_to_num(y), ref.nan_to_num().numpy())


# -- unbatched and empty input, as torch (issue 10 §7) ----------------------------------------------

POOLS = {
    "max-k3-s2-p1": (lambda: MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(3, 2, 1)),
    "max-k2": (lambda: MaxPool2d(2), lambda: nn.MaxPool2d(2)),
    "avg-k2": (lambda: AvgPool2d(2), lambda: nn.AvgPool2d(2)),
    "avg-k3-s2-p1": (lambda: AvgPool2d(3, 2, 1), lambda: nn.AvgPool2d(3, 2, 1)),
    "adaptive-avg-1": (lambda: AdaptiveAvgPool2d(1), lambda: nn.AdaptiveAvgPool2d(1)),
}


@dtypes
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("shape", [(3, 7, 6), (0, 3, 7, 6)], ids=["unbatched", "empty-batch"])
def test_pooling_unbatched_and_empty_batch(pool, shape, dtype):
    """(C, H, W) -> (C, Ho, Wo) with its gradient (C, H, W); N = 0 -> empty output and gradient."""
    make_np, make_t = POOLS[pool]
    res = assert_layer_parity(make_np(), make_t(), shape, dtype)
    assert res["y_np"].ndim == len(shape) and res["gx_np"].shape == shape


@dtypes
@pytest.mark.parametrize("kernel, shape", [(2, (2, 3, 8, 8)), (2, (2, 3, 7, 9)), ((2, 3), (2, 3, 7, 10)), ((3, 1), (1, 2, 9, 4))],
                         ids=["k2", "k2-cropped", "k2x3-cropped", "k3x1"])
def test_avgpool2d_tiling_windows(kernel, shape, dtype):
    """stride = kernel, no padding: the separable tile sums (DenseNet's transition pool), with the
    rows and columns no window covers left out as torch does."""
    assert_layer_parity(AvgPool2d(kernel), nn.AvgPool2d(kernel), shape, dtype)
