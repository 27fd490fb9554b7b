"""numpy_nn.optim vs torch.optim, saving and loading: ``state_dict`` resumes bit for bit (in memory
and through the app's checkpoint files), has torch's layout, loads torch's own state_dict, and
takes torch's class defaults for flags an older state lacks. The fixed gradients, optimizers and
state comparison are ``parity/test_optim.py``'s (moved out of it to keep each file readable).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from numpy_nn import Parameter
from numpy_nn import optim as np_optim
from parity.helpers import DTYPE_IDS, DTYPES, assert_close
from parity.test_optim import SHAPES, STEPS, assert_same_state, case_id, groups, make_optimizers, run_steps, set_grads


def copy_params(params: dict) -> dict:
    return {n: Parameter(p.data.copy()) for n, p in params.items()}



def run_steps_torch(opt, params, steps, dtype) -> None:
    for step in steps:
        set_grads(None, params, step, dtype)
        opt.step()


def assert_identical(params_a, opt_a, params_b, opt_b) -> None:
    """Bit-identical parameters and state (same arithmetic, so no tolerance)."""
    for n in SHAPES:
        np.testing.assert_array_equal(params_a[n].data, params_b[n].data, err_msg=f"param {n}")
        state_a, state_b = opt_a.state.get(params_a[n], {}), opt_b.state.get(params_b[n], {})
        assert sorted(state_a) == sorted(state_b), f"state keys of {n}"
        for key in state_a:
            np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=f"{key} of {n}")


RESUME_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {}),
]
SPLIT = 6  # stop after this many steps (before "late" has a gradient for long, after it appeared)


def interrupted_run(name, kw, dtype, roundtrip) -> tuple[dict, np_optim.Optimizer]:
    """Run SPLIT steps, snapshot, keep going a bit (the snapshot must not move), then rebuild an
    optimizer with other hyper-parameters on fresh Parameters, load the snapshot, finish."""
    params, _, opt, _ = make_optimizers(name, dict(kw), dtype)
    run_steps(opt, params, range(SPLIT), dtype)
    saved = roundtrip(opt.state_dict())
    params_at_split = copy_params(params)
    run_steps(opt, params, range(SPLIT, SPLIT + 2), dtype)
    resumed_opt = getattr(np_optim, name)(groups(params_at_split, None), lr=123.0)
    resumed_opt.load_state_dict(saved)
    run_steps(resumed_opt, params_at_split, range(SPLIT, STEPS), dtype)
    return params_at_split, resumed_opt


def through_checkpoint_files(tmp_path):
    """state_dict -> the app's checkpoint format (JSON tree + .npz arrays, no pickle) -> back."""
    from chexvision.checkpoint import flatten_state, read_npz, unflatten_state, write_npz

    def roundtrip(state_dict):
        tree, arrays = flatten_state(state_dict, "optimizer")
        (tmp_path / "state.json").write_text(json.dumps(tree))
        write_npz(tmp_path / "state.npz", arrays)
        return unflatten_state(json.loads((tmp_path / "state.json").read_text()), read_npz(tmp_path / "state.npz"))

    return roundtrip


@pytest.mark.parametrize("via", ["memory", "files"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", RESUME_CASES, ids=[case_id(c) for c in RESUME_CASES])
def test_state_dict_resume_equals_uninterrupted(case, dtype, via, tmp_path):
    name, kw = case
    full, t_params, full_opt, t_opt = make_optimizers(name, dict(kw), dtype)
    run_steps(full_opt, full, range(STEPS), dtype)
    roundtrip = (lambda sd: sd) if via == "memory" else through_checkpoint_files(tmp_path)
    resumed, resumed_opt = interrupted_run(name, kw, dtype, roundtrip)
    assert_identical(resumed, resumed_opt, full, full_opt)
    for g_resumed, g_full in zip(resumed_opt.param_groups, full_opt.param_groups):
        assert {k: v for k, v in g_resumed.items() if k != "params"} == {k: v for k, v in g_full.items() if k != "params"}
    run_steps_torch(t_opt, t_params, range(STEPS), dtype)  # and the uninterrupted run is torch's
    assert_same_state(full, t_params, full_opt, t_opt, dtype, "end")


@pytest.mark.parametrize("case", RESUME_CASES, ids=[case_id(c) for c in RESUME_CASES])
def test_state_dict_layout_matches_torch(case):
    """Same indices, state names, ``params`` lists and hyper-parameters as torch's state_dict."""
    name, kw = case
    np_params, t_params, np_opt, t_opt = make_optimizers(name, dict(kw), np.float64)
    for step in range(SPLIT):
        set_grads(np_params, t_params, step, np.float64)
        np_opt.step()
        t_opt.step()
    sd_np, sd_t = np_opt.state_dict(), t_opt.state_dict()
    assert sorted(sd_np["state"]) == sorted(sd_t["state"])
    for i, entries in sd_t["state"].items():
        assert sorted(sd_np["state"][i]) == sorted(entries), f"state {i}"
        for key, value in entries.items():
            if key == "step":
                assert sd_np["state"][i][key] == value.item()
            else:
                assert_close(sd_np["state"][i][key], value, f"state {i} {key}", np.float64)
    for g_np, g_t in zip(sd_np["param_groups"], sd_t["param_groups"]):
        assert g_np["params"] == g_t["params"]
        assert all(g_t[k] == v for k, v in g_np.items()), f"{g_np} vs torch {g_t}"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", RESUME_CASES, ids=[case_id(c) for c in RESUME_CASES])
def test_load_torch_state_dict_and_continue(case, dtype):
    """A torch optimizer's state_dict (tensors -> arrays) resumes a numpy_nn optimizer in lockstep."""
    name, kw = case
    np_params, t_params, np_opt, t_opt = make_optimizers(name, dict(kw), dtype)
    run_steps_torch(t_opt, t_params, range(SPLIT), dtype)
    sd = t_opt.state_dict()
    sd = {
        "state": {i: {k: (v.item() if k == "step" else v.numpy()) for k, v in s.items()} for i, s in sd["state"].items()},
        "param_groups": sd["param_groups"],
    }
    for n, p in np_params.items():
        p.data = t_params[n].detach().numpy().copy()
    np_opt.load_state_dict(sd)
    for step in range(SPLIT, STEPS):
        set_grads(np_params, t_params, step, dtype)
        np_opt.step()
        t_opt.step()
        assert_same_state(np_params, t_params, np_opt, t_opt, dtype, f"step {step}")


def test_load_state_dict_rejects_other_layouts():
    params, _, opt, _ = make_optimizers("Adam", {}, np.float64)
    run_steps(opt, params, range(2), np.float64)
    sd = opt.state_dict()
    other = np_optim.Adam([p for p in params.values()])
    with pytest.raises(ValueError, match="different number of parameter groups"):
        other.load_state_dict(sd)
    fewer = np_optim.Adam(groups({n: p for n, p in params.items() if n != "b2"}, None))
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        fewer.load_state_dict(sd)


# -- states saved before a flag existed (issue 10 §7) ----------------------------------------------

# The flags each torch optimizer's __setstate__ gives a default when a loaded group lacks them.
TORCH_SETSTATE_FLAGS = {
    "SGD": ["nesterov", "maximize", "foreach", "differentiable", "fused"],
    "RMSprop": ["momentum", "centered", "foreach", "maximize", "differentiable", "capturable"],
    "Adam": ["amsgrad", "maximize", "foreach", "capturable", "differentiable", "decoupled_weight_decay", "fused"],
    "AdamW": ["amsgrad", "maximize", "foreach", "capturable", "differentiable", "decoupled_weight_decay", "fused"],
}
OLDER_STATE_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"momentum": 0.8, "weight_decay": 0.1, "nesterov": True, "maximize": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"weight_decay": 0.1, "maximize": True}),
    ("Adam", {"maximize": True, "eps": 1e-3}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"maximize": True, "amsgrad": True}),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", OLDER_STATE_CASES, ids=[case_id(c) for c in OLDER_STATE_CASES])
def test_load_state_without_newer_flags_takes_class_defaults(case, dtype):
    """A state saved without the flags (as by an older torch) loaded into optimizers built with
    non-default flags: torch takes the *class* defaults (its __setstate__), not the constructor's,
    and numpy_nn must too, so the following steps agree (the reproduction kept maximize=True)."""
    name, kw = case
    _, t_src, _, t_opt = make_optimizers(name, dict(kw), dtype)
    run_steps_torch(t_opt, t_src, range(SPLIT), dtype)
    sd = t_opt.state_dict()
    for group in sd["param_groups"]:
        for flag in TORCH_SETSTATE_FLAGS[name]:
            group.pop(flag, None)
    np_params, t_params, np_opt, t_opt2 = make_optimizers(name, dict(kw), dtype)
    for n in SHAPES:
        with torch.no_grad():
            t_params[n].copy_(t_src[n])
        np_params[n].data = t_src[n].detach().numpy().copy()
    t_opt2.load_state_dict(sd)
    np_opt.load_state_dict({
        "state": {i: {k: (v.item() if k == "step" else v.numpy()) for k, v in s.items()} for i, s in sd["state"].items()},
        "param_groups": sd["param_groups"],
    })
    for g_np, g_t in zip(np_opt.param_groups, t_opt2.param_groups):
        for key, value in g_np.items():
            if key != "params":
                assert g_t[key] == value, f"{key}: {value} vs torch {g_t[key]}"
    for step in range(SPLIT, STEPS):
        set_grads(np_params, t_params, step, dtype)
        np_opt.step()
        t_opt2.step()
        assert_same_state(np_params, t_params, np_opt, t_opt2, dtype, f"step {step}")


def test_load_state_missing_a_hyper_parameter_is_an_error():
    """torch fails at the next step() with KeyError: 'lr'; numpy_nn says so when loading."""
    params, _, opt, _ = make_optimizers("Adam", {}, np.float64)
    run_steps(opt, params, range(2), np.float64)
    sd = opt.state_dict()
    del sd["param_groups"][1]["lr"]
    with pytest.raises(ValueError, match="parameter group 1 has no 'lr'"):
        opt.load_state_dict(sd)
