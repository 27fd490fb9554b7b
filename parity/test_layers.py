"""Parity of every dense layer, Identity, Sequential and the MLP with torch.

Each case goes through ``assert_layer_parity``: torch's weights copied into numpy_nn, one seeded
input, one seeded random upstream gradient; output, input gradient and every parameter gradient
compared by name, shape, dtype and value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import numpy_nn as nnp
from numpy_nn.models import MLP
from parity.helpers import DTYPE_IDS, DTYPES, assert_layer_parity
from torch_ref.layers import NumpyMaskDropout, use_numpy_masks
from torch_ref.models import MLP as TorchMLP

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
SHAPES = {"batch1": (1, 5), "odd": (7, 3), "3d": (3, 2, 5)}
shapes = pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    nnp.manual_seed(0)


# -- Linear -------------------------------------------------------------------------------------
@dtypes
@shapes
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("out_features", [1, 4], ids=["out1", "out4"])
def test_linear(shape, bias, out_features, dtype):
    in_features = shape[-1]
    assert_layer_parity(
        nnp.Linear(in_features, out_features, bias=bias), nn.Linear(in_features, out_features, bias=bias), shape, dtype
    )


def test_linear_default_init_matches_torch_bounds():
    # torch's kaiming_uniform_(a=√5) gives U(-1/√D_in, 1/√D_in) for weight and bias.
    layer = nnp.Linear(50, 400)
    bound = 1 / np.sqrt(50)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound


# -- element-wise activations, Softmax, Identity ---------------------------------------------
ACTIVATIONS = {
    "relu": (nnp.ReLU, nn.ReLU),
    "leaky0.01": (nnp.LeakyReLU, nn.LeakyReLU),
    "leaky0.2": (lambda: nnp.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    "sigmoid": (nnp.Sigmoid, nn.Sigmoid),
    "tanh": (nnp.Tanh, nn.Tanh),
    "softmax-1": (lambda: nnp.Softmax(dim=-1), lambda: nn.Softmax(dim=-1)),
    "softmax0": (lambda: nnp.Softmax(dim=0), lambda: nn.Softmax(dim=0)),
    "softmax1": (lambda: nnp.Softmax(dim=1), lambda: nn.Softmax(dim=1)),
    "identity": (nnp.Identity, nn.Identity),
}
activations = pytest.mark.parametrize("make", list(ACTIVATIONS.values()), ids=list(ACTIVATIONS))


@dtypes
@shapes
@activations
def test_activation(make, shape, dtype):
    np_make, torch_make = make
    assert_layer_parity(np_make(), torch_make(), shape, dtype)


KINK_INPUT = np.array([[-1.0, 0.0, 1.0, -0.0], [0.0, 2.5, -3.0, 0.0]])


@dtypes
@pytest.mark.parametrize(
    "make",
    [(nnp.ReLU, nn.ReLU), (lambda: nnp.LeakyReLU(0.1), lambda: nn.LeakyReLU(0.1))],
    ids=["relu", "leaky0.1"],
)
def test_kink_at_zero_matches_torch(make, dtype):
    # ReLU'(0) = 0 and LeakyReLU'(0) = negative_slope in torch; -0.0 as well.
    res = assert_layer_parity(make[0](), make[1](), KINK_INPUT.shape, dtype, x=KINK_INPUT)
    zeros = KINK_INPUT == 0
    assert np.all(res["gx_np"][zeros] != res["upstream"][zeros])  # the kink takes the left slope


EXTREME = np.array([[1e4, -1e4, 0.0, 50.0], [-50.0, 30.0, -1e4, 1e4], [88.0, -88.0, 1e-30, -1e-30]])


@dtypes
@activations
def test_activation_extremes(make, dtype):
    np_make, torch_make = make
    res = assert_layer_parity(np_make(), torch_make(), EXTREME.shape, dtype, x=EXTREME)
    assert np.all(np.isfinite(res["y_np"])) and np.all(np.isfinite(res["gx_np"]))


@dtypes
def test_softmax_large_spread_3d(dtype):
    x = np.random.default_rng(3).uniform(-3e3, 3e3, size=(2, 4, 3))
    for dim in (0, 1, 2):
        assert_layer_parity(nnp.Softmax(dim=dim), nn.Softmax(dim=dim), x.shape, dtype, x=x)


# -- Flatten --------------------------------------------------------------------------------------
@dtypes
@pytest.mark.parametrize("dims", [(1, -1), (0, -1), (2, 3), (1, 2)], ids=["1..-1", "0..-1", "2..3", "1..2"])
@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (3, 1, 5, 2)], ids=["batch1", "odd"])
def test_flatten(dims, shape, dtype):
    assert_layer_parity(nnp.Flatten(*dims), nn.Flatten(*dims), shape, dtype)


# -- Sequential -------------------------------------------------------------------------------
@dtypes
@pytest.mark.parametrize("batch", [1, 7], ids=["batch1", "batch7"])
def test_sequential(batch, dtype):
    np_seq = nnp.Sequential(
        nnp.Linear(6, 5), nnp.Tanh(), nnp.Linear(5, 4, bias=False), nnp.LeakyReLU(0.05),
        nnp.Linear(4, 3), nnp.Sigmoid(), nnp.Linear(3, 3), nnp.Softmax(dim=1),
    )
    t_seq = nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4, bias=False), nn.LeakyReLU(0.05),
        nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 3), nn.Softmax(dim=1),
    )
    assert_layer_parity(np_seq, t_seq, (batch, 6), dtype)


# -- Dropout ----------------------------------------------------------------------------------
@dtypes
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(1, 9), (6, 5), (3, 2, 7)], ids=["batch1", "odd", "3d"])
def test_dropout_same_mask_as_torch(p, shape, dtype):
    np_drop = nnp.Dropout(p, generator=np.random.default_rng(11))
    t_drop = NumpyMaskDropout(p, np.random.default_rng(11))
    res = assert_layer_parity(np_drop, t_drop, shape, dtype)
    dropped = res["y_np"] == 0
    assert np.all(res["gx_np"][dropped] == 0)


@dtypes
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_eval_is_identity(p, dtype):
    np_drop, t_drop = nnp.Dropout(p).eval(), nn.Dropout(p).eval()
    res = assert_layer_parity(np_drop, t_drop, (4, 6), dtype)
    np.testing.assert_array_equal(res["gx_np"], res["upstream"])


@dtypes
@pytest.mark.parametrize("p", [0.0, 1.0], ids=["p0", "p1"])
def test_dropout_deterministic_extremes_in_train_mode(p, dtype):
    # p = 0 keeps everything, p = 1 zeroes everything: torch's own nn.Dropout is deterministic here.
    res = assert_layer_parity(nnp.Dropout(p), nn.Dropout(p), (5, 3), dtype)
    if p == 1.0:
        assert not np.any(res["y_np"]) and not np.any(res["gx_np"])


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_statistics(p):
    """Keep rate ≈ 1 − p (within 5 binomial standard deviations) and kept values scaled by 1/(1 − p),
    as torch's own nn.Dropout."""
    n = 200_000
    x = np.ones((n // 100, 100))
    drop = nnp.Dropout(p, generator=np.random.default_rng(5))
    y = drop(x)
    kept = y != 0
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)
    assert abs(y.mean() - 1) < 5 * sigma / (1 - p)  # E[y] = x
    np.testing.assert_array_equal(drop.backward(x), y)  # dy/dx = m / (1 − p)

    y_t = nn.Dropout(p)(torch.ones(x.shape, dtype=torch.float64)).numpy()
    kept_t = y_t != 0
    assert abs(kept_t.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_allclose(y_t[kept_t], 1 / (1 - p), rtol=1e-15)


def test_dropout_default_generator_is_seedable_and_masks_change_between_calls():
    x = np.ones((8, 16), np.float32)
    drop = nnp.Dropout(0.5)
    nnp.manual_seed(42)
    a, b = drop(x), drop(x)
    nnp.manual_seed(42)
    np.testing.assert_array_equal(drop(x), a)
    assert np.any(a != b)


def test_dropout_rejects_bad_p():
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            nnp.Dropout(p)


# -- MLP ---------------------------------------------------------------------------------------
MLP_ARGS = dict(in_features=12, hidden=(9, 5), out_features=2)


@dtypes
@pytest.mark.parametrize("shape", [(1, 12), (5, 12), (3, 1, 3, 4)], ids=["batch1", "odd", "image"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodrop", "drop0.3"])
def test_mlp_eval(shape, dropout, dtype):
    np_mlp, t_mlp = MLP(**MLP_ARGS, dropout=dropout).eval(), TorchMLP(**MLP_ARGS, dropout=dropout).eval()
    assert_layer_parity(np_mlp, t_mlp, shape, dtype)


@dtypes
@pytest.mark.parametrize("batch", [1, 6], ids=["batch1", "batch6"])
def test_mlp_train_with_shared_dropout_masks(batch, dtype):
    np_mlp, t_mlp = MLP(**MLP_ARGS, dropout=0.4), TorchMLP(**MLP_ARGS, dropout=0.4)
    shared = np.random.default_rng(2024)
    for m in np_mlp.modules():
        if isinstance(m, nnp.Dropout):
            m.generator = shared  # one generator, drawn in forward order, as use_numpy_masks does
    use_numpy_masks(t_mlp, np.random.default_rng(2024))
    assert np_mlp.training and t_mlp.training
    res = assert_layer_parity(np_mlp, t_mlp, (batch, 12), dtype)
    assert np.any(res["gx_np"])


def test_mlp_default_init_is_he_normal():
    mlp = MLP(in_features=1024, hidden=(512,), out_features=1, dropout=0.0)
    w = mlp.layers[0].weight.data
    assert abs(w.std() - np.sqrt(2 / 1024)) < 0.03 * np.sqrt(2 / 1024)
    assert not np.any(mlp.layers[0].bias.data)


@dtypes
def test_mismatched_input_dtype_is_refused(dtype):
    other = np.float32 if dtype == np.float64 else np.float64
    layer = nnp.Linear(3, 2).to(dtype)
    with pytest.raises(TypeError, match="dtype"):
        layer(np.ones((2, 3), other))
    assert layer(np.ones((2, 3), dtype)).dtype == dtype
