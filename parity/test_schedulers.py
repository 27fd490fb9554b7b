"""numpy_nn.optim.lr_scheduler vs torch.optim.lr_scheduler: the lr of every group at every epoch.

Both compute the same recursive Python-float formulas, so the lrs must be *exactly* equal (no
tolerance): a closed form in place of torch's recursion, or an off-by-one epoch, fails here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from numpy_nn import Parameter
from numpy_nn import optim as np_optim
from numpy_nn.optim import lr_scheduler as np_sched

LRS = (0.1, 0.03)  # two param groups with different base lrs
EPOCHS = 40


def optimizers():
    np_params = [Parameter(np.zeros(3)), Parameter(np.zeros(2))]
    t_params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    np_opt = np_optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(np_params, LRS)], lr=1.0)
    t_opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(t_params, LRS)], lr=1.0)
    return np_opt, t_opt


# name -> builder(module, optimizer) using the same words in both tracks
SCHEDULES = {
    "cosine-T10": lambda m, o: m.CosineAnnealingLR(o, T_max=10),
    "cosine-T7-eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
    "cosine-T1": lambda m, o: m.CosineAnnealingLR(o, T_max=1, eta_min=1e-4),
    "step-3-gamma0.5": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "step-default-gamma": lambda m, o: m.StepLR(o, step_size=4),
    "linear-defaults": lambda m, o: m.LinearLR(o),
    "linear-warmup": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=8),
    "linear-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.25, total_iters=6),
    "sequential-warmup-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=25, eta_min=1e-5)],
        milestones=[5],
    ),
    "sequential-three": lambda m, o: m.SequentialLR(
        o,
        [m.LinearLR(o, start_factor=0.5, total_iters=3), m.StepLR(o, step_size=2, gamma=0.7),
         m.CosineAnnealingLR(o, T_max=6)],
        milestones=[3, 9],
    ),
}


def lrs(opt) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def advance(opt, sched) -> None:
    opt.step()  # torch warns unless the optimizer steps first; no gradients, so nothing moves
    sched.step()


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_lrs_equal_torch_every_epoch(name):
    np_opt, t_opt = optimizers()
    s_np, s_t = SCHEDULES[name](np_sched, np_opt), SCHEDULES[name](torch.optim.lr_scheduler, t_opt)
    for epoch in range(EPOCHS):  # well past T_max / total_iters / every milestone
        assert lrs(np_opt) == lrs(t_opt), f"epoch {epoch}: {lrs(np_opt)} vs torch {lrs(t_opt)}"
        assert s_np.get_last_lr() == s_t.get_last_lr(), f"epoch {epoch}: get_last_lr"
        assert s_np.last_epoch == s_t.last_epoch, f"epoch {epoch}: last_epoch"
        advance(np_opt, s_np)
        advance(t_opt, s_t)
    assert [g["initial_lr"] for g in np_opt.param_groups] == [g["initial_lr"] for g in t_opt.param_groups]
    if hasattr(s_t, "base_lrs"):
        assert s_np.base_lrs == s_t.base_lrs


def comparable(state: dict) -> dict:
    """A scheduler state_dict without torch's internal re-entrancy flag."""
    out = {k: v for k, v in state.items() if k != "_get_lr_called_within_step"}
    if "_schedulers" in out:
        out["_schedulers"] = [comparable(s) for s in out["_schedulers"]]
    return out


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_equals_torch(name):
    np_opt, t_opt = optimizers()
    s_np, s_t = SCHEDULES[name](np_sched, np_opt), SCHEDULES[name](torch.optim.lr_scheduler, t_opt)
    for _ in range(7):
        advance(np_opt, s_np)
        advance(t_opt, s_t)
    assert comparable(s_np.state_dict()) == comparable(s_t.state_dict())


@pytest.mark.parametrize("via_json", [False, True], ids=["memory", "json"])
@pytest.mark.parametrize("name", ["cosine-T7-eta_min", "linear-warmup", "sequential-warmup-cosine", "sequential-three"])
def test_resume_mid_run_equals_torch(name, via_json):
    """Save optimizer + scheduler at epoch 9, rebuild both fresh, load (scheduler first, as torch
    documents), continue: the lrs follow torch's uninterrupted run."""
    np_opt, t_opt = optimizers()
    s_np, s_t = SCHEDULES[name](np_sched, np_opt), SCHEDULES[name](torch.optim.lr_scheduler, t_opt)
    for _ in range(9):
        advance(np_opt, s_np)
    saved_sched, saved_opt = s_np.state_dict(), np_opt.state_dict()
    if via_json:  # a scheduler's state is plain numbers and lists: JSON holds it as is
        saved_sched = json.loads(json.dumps(saved_sched))
        saved_opt = json.loads(json.dumps(saved_opt))
    np_opt2, _ = optimizers()
    s_np2 = SCHEDULES[name](np_sched, np_opt2)
    s_np2.load_state_dict(saved_sched)
    np_opt2.load_state_dict(saved_opt)
    for epoch in range(EPOCHS):
        if epoch >= 9:
            assert lrs(np_opt2) == lrs(t_opt), f"epoch {epoch}: {lrs(np_opt2)} vs torch {lrs(t_opt)}"
            assert s_np2.get_last_lr() == s_t.get_last_lr()
            advance(np_opt2, s_np2)
        advance(t_opt, s_t)


def test_lr_reaches_optimizer_update():
    """The scheduled lr is the one the optimizer uses: SGD moves θ by exactly −lr·g each epoch."""
    p = Parameter(np.zeros(1))
    opt = np_optim.SGD([p], lr=0.5)
    sched = np_sched.StepLR(opt, step_size=1, gamma=0.5)
    for expected_lr in (0.5, 0.25, 0.125):
        before = p.data.copy()
        p.grad = np.ones(1)
        opt.step()
        np.testing.assert_array_equal(before - p.data, [expected_lr])
        sched.step()


INVALID = [
    ("linear-start-0", lambda m, o: m.LinearLR(o, start_factor=0.0), ValueError),
    ("linear-start-above-1", lambda m, o: m.LinearLR(o, start_factor=1.5), ValueError),
    ("linear-end-negative", lambda m, o: m.LinearLR(o, end_factor=-0.1), ValueError),
    ("sequential-milestones", lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.StepLR(o, 3)], milestones=[]),
     ValueError),
    ("sequential-empty", lambda m, o: m.SequentialLR(o, [], milestones=[]), ValueError),
    ("resume-without-initial_lr", lambda m, o: m.StepLR(o, step_size=2, last_epoch=3), KeyError),
]


@pytest.mark.parametrize("name, build, error", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_arguments_raise_like_torch(name, build, error):
    np_opt, t_opt = optimizers()
    with pytest.raises(error) as t_err:
        build(torch.optim.lr_scheduler, t_opt)
    with pytest.raises(error) as np_err:
        build(np_sched, np_opt)
    if error is ValueError:
        assert str(np_err.value) == str(t_err.value)


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        np_sched.StepLR([], step_size=1)
    np_opt, _ = optimizers()
    other, _ = optimizers()
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        np_sched.SequentialLR(np_opt, [np_sched.StepLR(np_opt, 2), np_sched.StepLR(other, 2)], milestones=[3])
