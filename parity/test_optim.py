"""numpy_nn.optim vs torch.optim: parameters and every state entry after every step.

One fixed sequence of random gradients drives both optimizers (weights decayed, biases not, via
param groups; one parameter whose gradient stays None; one whose gradient appears only at step 4),
and after each step the parameters and the full state (``step``, ``exp_avg``, ``momentum_buffer``,
...) must equal torch's: float64 at torch's float64 defaults, float32 at 5x torch's float32 ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpy_nn import Parameter
from numpy_nn import optim as np_optim
from parity.helpers import DTYPE_IDS, DTYPES, assert_close

STEPS = 12
# "big" spans several optimizer blocks (numpy_nn.optim.optimizer.BLOCK), the last one partial.
SHAPES = {"w1": (5, 4), "b1": (5,), "w2": (3, 5), "b2": (3,), "frozen": (2, 2), "late": (4, 3), "big": (401, 353)}
LATE_FROM = 4  # "late" gets a gradient from this step on; "frozen" never does
LR = {"SGD": 0.05, "RMSprop": 0.01, "Adam": 0.01, "AdamW": 0.01}

CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"weight_decay": 0.1}),
    ("SGD", {"momentum": 0.8, "weight_decay": 0.1, "nesterov": True, "maximize": True}),
    ("SGD", {"maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"alpha": 0.9}),
    ("RMSprop", {"alpha": 0.3}),  # lerp weight 1 − α ≥ 0.5 takes torch's other lerp branch
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"weight_decay": 0.1, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("Adam", {"betas": (0.3, 0.9)}),  # lerp weight 1 − β1 ≥ 0.5
    ("Adam", {"maximize": True, "eps": 1e-3}),
    ("Adam", {"lr": 0.0, "weight_decay": 0.1}),  # moments move, θ must not
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0.0}),
    ("AdamW", {"weight_decay": 0.3, "amsgrad": True}),
    ("AdamW", {"maximize": True}),
    ("AdamW", {"lr": 0.0}),
]


def case_id(case) -> str:
    name, kw = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "-defaults")


def make_pair(dtype, seed: int = 0):
    """The same named parameters as numpy_nn Parameters and torch leaf tensors."""
    rng = np.random.default_rng(seed)
    values = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    np_params = {n: Parameter(v.copy()) for n, v in values.items()}
    t_params = {n: torch.nn.Parameter(torch.tensor(v)) for n, v in values.items()}
    return np_params, t_params


def groups(params: dict, weight_decay: float | None) -> list[dict]:
    """Decay on weights (ndim > 1) only, as the app does; no override when weight_decay is None."""
    weights = [p for n, p in params.items() if len(SHAPES[n]) > 1]
    others = [p for n, p in params.items() if len(SHAPES[n]) == 1]
    if weight_decay is None:
        return [{"params": weights}, {"params": others}]
    return [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def make_optimizers(name: str, kw: dict, dtype, seed: int = 0):
    np_params, t_params = make_pair(dtype, seed)
    kw = {"lr": LR[name], **kw}
    wd = kw.pop("weight_decay", None)
    np_opt = getattr(np_optim, name)(groups(np_params, wd), **kw)
    t_opt = getattr(torch.optim, name)(groups(t_params, wd), **kw)
    return np_params, t_params, np_opt, t_opt


def gradient(name: str, step: int, dtype, seed: int = 0) -> np.ndarray | None:
    """The fixed gradient of parameter ``name`` at ``step`` (None: no gradient this step)."""
    if name == "frozen" or (name == "late" and step < LATE_FROM):
        return None
    rng = np.random.default_rng([seed, step, list(SHAPES).index(name)])
    return rng.standard_normal(SHAPES[name]).astype(dtype)


def set_grads(np_params: dict | None, t_params: dict | None, step: int, dtype) -> None:
    for n in SHAPES:
        g = gradient(n, step, dtype)
        if np_params is not None:
            np_params[n].grad = None if g is None else g.copy()  # a fresh array, as a backward makes
        if t_params is not None:
            t_params[n].grad = None if g is None else torch.tensor(g)


def assert_same_state(np_params, t_params, np_opt, t_opt, dtype, where: str) -> None:
    for n in SHAPES:
        assert_close(np_params[n].data, t_params[n], f"{where}: param {n}", dtype)
        np_state, t_state = np_opt.state.get(np_params[n], {}), t_opt.state.get(t_params[n], {})
        assert sorted(np_state) == sorted(t_state), f"{where}: state keys of {n}: {sorted(np_state)} vs torch {sorted(t_state)}"
        for key, t_value in t_state.items():
            if key == "step":
                assert isinstance(np_state[key], float), f"{where}: step of {n} is {type(np_state[key])}"
                assert np_state[key] == t_value.item(), f"{where}: step of {n}"
            else:
                assert_close(np_state[key], t_value, f"{where}: {key} of {n}", dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_steps_match_torch(case, dtype):
    name, kw = case
    np_params, t_params, np_opt, t_opt = make_optimizers(name, dict(kw), dtype)
    for step in range(STEPS):
        set_grads(np_params, t_params, step, dtype)
        np_opt.step()
        t_opt.step()
        assert_same_state(np_params, t_params, np_opt, t_opt, dtype, f"step {step}")
    assert np_params["frozen"] not in np_opt.state  # never had a gradient: no state, no change
    np.testing.assert_array_equal(np_params["frozen"].data, make_pair(dtype)[0]["frozen"].data)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_param_groups_match_torch(case):
    name, kw = case
    _, _, np_opt, t_opt = make_optimizers(name, dict(kw), np.float64)
    for i, (g_np, g_t) in enumerate(zip(np_opt.param_groups, t_opt.param_groups)):
        for key, value in g_np.items():
            if key != "params":
                assert value == g_t[key], f"group {i} {key}: {value!r} vs torch {g_t[key]!r}"


def run_steps(opt, params, steps, dtype) -> None:
    for step in steps:
        set_grads(params, None, step, dtype)
        opt.step()


def test_zero_grad():
    params, _, opt, _ = make_optimizers("SGD", {}, np.float64)
    set_grads(params, None, 5, np.float64)
    opt.zero_grad(set_to_none=False)
    assert params["w1"].grad is not None and not params["w1"].grad.any()
    assert params["frozen"].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in params.values())


def test_float32_stays_float32():
    """Python-float hyper-parameters never promote float32 parameters or state to float64."""
    for name in ("SGD", "RMSprop", "Adam", "AdamW"):
        kw = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
        params, _, opt, _ = make_optimizers(name, dict(kw), np.float32)
        run_steps(opt, params, range(3), np.float32)
        for p in params.values():
            assert p.data.dtype == np.float32, name
            for key, value in opt.state.get(p, {}).items():
                assert key == "step" or value.dtype == np.float32, f"{name} {key}"


INVALID = [
    ("SGD", {"lr": -1.0}),
    ("SGD", {"momentum": -0.5}),
    ("SGD", {"weight_decay": -1e-4}),
    ("SGD", {"nesterov": True}),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("RMSprop", {"lr": -1.0}),
    ("RMSprop", {"alpha": -0.1}),
    ("RMSprop", {"eps": -1e-8}),
    ("RMSprop", {"momentum": -1.0}),
    ("RMSprop", {"weight_decay": -1.0}),
    ("Adam", {"lr": -1e-3}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"betas": (0, 0.999)}),
    ("Adam", {"eps": -1.0}),
    ("Adam", {"weight_decay": -0.1}),
    ("AdamW", {"lr": -1e-3}),
    ("AdamW", {"betas": (0.9, 1.0)}),
    ("AdamW", {"weight_decay": -0.1}),
]


@pytest.mark.parametrize("case", INVALID, ids=[case_id(c) for c in INVALID])
def test_invalid_arguments_raise_like_torch(case):
    name, kw = case
    with pytest.raises(ValueError) as t_err:
        getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))], **kw)
    with pytest.raises(ValueError) as np_err:
        getattr(np_optim, name)([Parameter(np.zeros(2))], **kw)
    assert str(np_err.value) == str(t_err.value)


def test_invalid_params_raise_like_torch():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        np_optim.SGD([])
    with pytest.raises(TypeError, match="iterable of Parameters or dicts"):
        np_optim.SGD(p)
    with pytest.raises(TypeError, match="can only optimize Parameters"):
        np_optim.SGD([np.zeros(2)])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        np_optim.Adam([{"params": [p]}, {"params": [p], "lr": 0.1}])
    with pytest.raises(TypeError, match="ordered collections"):
        np_optim.Adam([{"params": {p}}])


def test_big_parameter_spans_several_blocks():
    """Guard for the cases above: "big" really exercises the blocked update, partial block included."""
    from numpy_nn.optim.optimizer import BLOCK

    size = int(np.prod(SHAPES["big"]))
    assert size > 2 * BLOCK and size % BLOCK != 0
