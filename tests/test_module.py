"""The Module contract: names, gradient accumulation, modes, dtype, state dicts and .npz files."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_nn as nnp
from numpy_nn import serialization
from numpy_nn.models import MLP
from numpy_nn.module import Module, Parameter


class WithBuffer(Module):
    """A Linear followed by a registered buffer, to see buffers in state_dict (as BatchNorm's)."""

    def __init__(self):
        super().__init__()
        self.fc = nnp.Linear(3, 2)
        self.register_buffer("running_mean", np.zeros(2, np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        self.scale = Parameter(np.ones(2, np.float32))

    def forward(self, x):
        return self.fc(x) * self.scale.data


def small_mlp(dropout=0.3, dtype=np.float32):
    return MLP(in_features=8, hidden=(6, 5, 4), out_features=1, dropout=dropout, dtype=dtype)


# -- names ------------------------------------------------------------------------------------
def test_mlp_parameter_names_follow_torch():
    expected = [f"layers.{i}.{k}" for i in (0, 3, 6, 9) for k in ("weight", "bias")]
    assert [n for n, _ in small_mlp().named_parameters()] == expected
    assert list(small_mlp().state_dict()) == expected
    no_dropout = [f"layers.{i}.{k}" for i in (0, 2, 4, 6) for k in ("weight", "bias")]
    assert list(small_mlp(dropout=0.0).state_dict()) == no_dropout


def test_shapes_follow_torch_layout():
    shapes = {n: p.shape for n, p in small_mlp().named_parameters()}
    assert shapes["layers.0.weight"] == (6, 8) and shapes["layers.0.bias"] == (6,)
    assert shapes["layers.9.weight"] == (1, 4)


def test_nested_sequential_names_and_buffers():
    model = nnp.Sequential(nnp.Linear(2, 3, bias=False), nnp.Sequential(nnp.ReLU(), WithBuffer()))
    # torch's order (checked against an identical torch model): a module's own parameters, then
    # its own buffers, then its children's, even though the child ``fc`` was assigned first.
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "1.1.scale", "1.1.fc.weight", "1.1.fc.bias"]
    assert list(model.state_dict()) == [
        "0.weight", "1.1.scale", "1.1.running_mean", "1.1.num_batches_tracked", "1.1.fc.weight", "1.1.fc.bias",
    ]


def test_reassigned_buffer_stays_registered_in_place():
    m = WithBuffer()
    before = list(m.state_dict())
    m.running_mean = np.full(2, 3.0, np.float32)  # how BatchNorm updates its running statistics
    assert list(m.state_dict()) == before
    np.testing.assert_array_equal(m.state_dict()["running_mean"], [3.0, 3.0])


# -- gradients --------------------------------------------------------------------------------
def test_grads_accumulate_across_backwards_and_zero_grad_clears():
    model = small_mlp(dropout=0.0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 8))
    u = np.random.default_rng(1).standard_normal((5, 1))
    assert all(p.grad is None for p in model.parameters())
    model(x)
    model.backward(u)
    once = {n: p.grad.copy() for n, p in model.named_parameters()}
    model(x)
    model.backward(u)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-14, atol=0, err_msg=n)
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_accumulate_grad_checks_shape_and_adopts_the_first_array():
    p = Parameter(np.zeros((2, 3)))
    g = np.ones((2, 3))
    p.accumulate_grad(g)
    assert p.grad is g
    p.accumulate_grad(np.ones((2, 3)))
    np.testing.assert_array_equal(g, 2.0)
    with pytest.raises(ValueError, match="shape"):
        p.accumulate_grad(np.ones(3))


# -- modes and dtypes -------------------------------------------------------------------------
def test_train_eval_propagate_to_every_submodule():
    model = small_mlp()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = np.ones((3, 8), np.float32)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))  # no dropout in eval


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_to_dtype_keeps_dtype_end_to_end(dtype):
    model = WithBuffer().to(dtype)
    mlp = small_mlp().to(dtype)
    for m in (model, mlp):
        assert all(p.dtype == dtype for p in m.parameters())
    assert model.running_mean.dtype == dtype
    assert model.num_batches_tracked.dtype == np.int64  # integer buffers keep their dtype, as torch
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(dtype)
    y = mlp(x)
    gx = mlp.backward(np.ones_like(y))
    assert y.dtype == dtype and gx.dtype == dtype
    assert all(p.grad.dtype == dtype for p in mlp.parameters())
    other = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match="dtype"):
        mlp(x.astype(other))


def test_double_and_float_drop_grads():
    model = small_mlp(dropout=0.0)
    model(np.ones((2, 8), np.float32))
    model.backward(np.ones((2, 1), np.float32))
    model.double()
    assert all(p.grad is None and p.dtype == np.float64 for p in model.parameters())
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())


# -- state dicts and .npz files ---------------------------------------------------------------
def test_save_load_round_trip_is_bit_exact(tmp_path):
    src = nnp.Sequential(small_mlp(dtype=np.float64), WithBuffer().to(np.float32))
    src[1].num_batches_tracked = np.array(17, np.int64)
    src[1].running_mean = np.array([1e-30, -3.5], np.float32)
    path = tmp_path / "model.npz"
    serialization.save(src.state_dict(), path)
    loaded = serialization.load(path)
    assert list(loaded) == list(src.state_dict())
    for k, v in src.state_dict().items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        assert loaded[k].tobytes() == v.tobytes(), k

    dst = nnp.Sequential(small_mlp(dtype=np.float64), WithBuffer().to(np.float32))
    dst.load_state_dict(loaded)
    for k, v in src.state_dict().items():
        assert dst.state_dict()[k].tobytes() == v.tobytes(), k
    x = np.random.default_rng(0).standard_normal((2, 8))
    np.testing.assert_array_equal(dst[0].eval()(x), src[0].eval()(x))


def test_load_state_dict_casts_to_the_model_dtype_and_copies():
    model = small_mlp(dropout=0.0, dtype=np.float32)
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in model.parameters())
    state["layers.0.bias"][:] = 99.0
    assert not np.any(model.layers[0].bias.data == 99.0)


def test_load_state_dict_names_missing_key():
    model = small_mlp()
    state = model.state_dict()
    del state["layers.3.bias"]
    with pytest.raises(KeyError, match=r"missing keys: layers\.3\.bias"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)  # tolerated when not strict


def test_load_state_dict_names_unexpected_key():
    model = small_mlp()
    state = model.state_dict()
    state["layers.99.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(KeyError, match=r"unexpected keys: layers\.99\.weight"):
        model.load_state_dict(state)


def test_load_state_dict_names_mis_shaped_key_and_changes_nothing():
    model = small_mlp()
    before = model.state_dict()
    state = model.state_dict()
    state["layers.0.bias"] = np.zeros(7, np.float32)
    state["layers.6.weight"] = np.ones_like(state["layers.6.weight"])
    with pytest.raises(ValueError, match=r"layers\.0\.bias.*\(7,\).*\(6,\)"):
        model.load_state_dict(state, strict=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_object_array_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"layers.0.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        serialization.load(path)
    with pytest.raises(TypeError, match="object array"):
        serialization.save({"w": np.array([None], dtype=object)}, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()
