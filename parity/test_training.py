"""Whole-training parity: numpy_nn.training.train_step vs torch_ref.training.train_step.

The same MLP (weights copied from torch), the same batches, the same dropout masks (both tracks
draw them from NumPy generators seeded alike), the same optimizer with weight-decay groups, label
smoothing and an L1/L2 penalty: after *every* step the losses, every weight and every optimizer
state entry must equal torch's (float64 at torch's float64 defaults).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpy_nn.training as np_training
import torch_ref.training as t_training
from numpy_nn import models as np_models
from numpy_nn import optim as np_optim
from numpy_nn.layers import Dropout
from numpy_nn.losses import BCEWithLogitsLoss as NpBCE
from parity.helpers import assert_close
from torch_ref import models as t_models
from torch_ref.exchange import torch_to_numpy
from torch_ref.layers import use_numpy_masks
from torch_ref.losses import BCEWithLogitsLoss as TorchBCE

IN, HIDDEN, BATCH = 64, (32, 16), 24

# id -> (optimizer name, optimizer kwargs, weight decay on weights, loss kwargs, l1, l2, dropout)
CASES = {
    "adam-wd-smoothing-l2": ("Adam", {"lr": 3e-3}, 1e-2, {"label_smoothing": 0.1}, 0.0, 1e-3, 0.3),
    "adamw-amsgrad-posweight-l1": ("AdamW", {"lr": 3e-3, "amsgrad": True}, 5e-2, {"pos_weight": 2.5}, 1e-4, 0.0, 0.2),
    "sgd-nesterov-l1-l2": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 1e-3,
                           {"label_smoothing": 0.05}, 1e-4, 1e-3, 0.3),
    "rmsprop-centered-no-dropout": ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}, 1e-3, {}, 0.0, 0.0, 0.0),
}


def batches(steps: int, dtype, seed: int = 0, distinct: int = 6):
    """``steps`` batches cycling through ``distinct`` fixed (x, y) ones (so the loss can fall);
    y is (N, 1) as the app passes it (train_step flattens it)."""
    rng = np.random.default_rng(seed)
    fixed = [
        (rng.standard_normal((BATCH, IN)).astype(dtype), (rng.random((BATCH, 1)) < 0.4).astype(dtype))
        for _ in range(distinct)
    ]
    for step in range(steps):
        yield fixed[step % distinct]


def build(case: str, dtype, seed: int = 0):
    name, opt_kw, wd, loss_kw, l1, l2, p = CASES[case]
    torch.manual_seed(seed)
    t_model = t_models.MLP(IN, HIDDEN, 1, dropout=p, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    np_model = np_models.MLP(IN, HIDDEN, 1, dropout=p, dtype=dtype)
    torch_to_numpy(t_model, np_model)  # the same initial weights
    np_model.layers[0].needs_input_grad = False  # the input is data (torch: x.requires_grad=False)
    # The same dropout masks: one NumPy generator per track, seeded alike, drawn in layer order.
    use_numpy_masks(t_model, np.random.default_rng(seed + 1))
    np_rng = np.random.default_rng(seed + 1)
    for m in np_model.modules():
        if isinstance(m, Dropout):
            m.generator = np_rng
    np_opt = getattr(np_optim, name)(np_training.weight_decay_groups(np_model, wd), **opt_kw)
    t_opt = getattr(torch.optim, name)(t_training.weight_decay_groups(t_model, wd), **opt_kw)
    return (np_model, NpBCE(**loss_kw), np_opt), (t_model, TorchBCE(**loss_kw), t_opt), (l1, l2)


def assert_models_equal(np_model, np_opt, t_model, t_opt, dtype, where: str, scale: float = 1.0) -> None:
    np_params = dict(np_model.named_parameters())
    t_params = dict(t_model.named_parameters())
    assert list(np_params) == list(t_params)
    for name, tp in t_params.items():
        assert_close(np_params[name].data, tp, f"{where}: {name}", dtype, scale)
        np_state, t_state = np_opt.state[np_params[name]], t_opt.state[tp]
        assert sorted(np_state) == sorted(t_state), f"{where}: state keys of {name}"
        for key, value in t_state.items():
            if key == "step":
                assert np_state[key] == value.item(), f"{where}: step of {name}"
            else:
                assert_close(np_state[key], value, f"{where}: {key} of {name}", dtype, scale)


@pytest.mark.parametrize("case", list(CASES))
def test_training_run_matches_torch_float64(case):
    dtype = np.float64
    (np_model, np_crit, np_opt), (t_model, t_crit, t_opt), (l1, l2) = build(case, dtype)
    losses = []
    for step, (x, y) in enumerate(batches(60, dtype)):
        np_loss, np_reg = np_training.train_step(np_model, np_crit, np_opt, x, y, l1=l1, l2=l2)
        t_loss, t_reg = t_training.train_step(t_model, t_crit, t_opt, torch.from_numpy(x), torch.from_numpy(y),
                                              l1=l1, l2=l2)
        assert isinstance(np_loss, float) and isinstance(np_reg, float)
        assert_close(np.float64(np_loss), np.float64(t_loss), f"step {step}: data loss", dtype)
        assert_close(np.float64(np_reg), np.float64(t_reg), f"step {step}: penalty", dtype)
        assert_models_equal(np_model, np_opt, t_model, t_opt, dtype, f"step {step}")
        losses.append(np_loss)
    # not a vacuous match: the run learns (the last pass over the 6 batches beats the first)
    assert np.mean(losses[-6:]) < 0.9 * np.mean(losses[:6]), losses


def test_training_run_matches_torch_float32():
    """float32 training (the app's default) stays within 5x torch's float32 tolerance for 15 steps."""
    dtype = np.float32
    (np_model, np_crit, np_opt), (t_model, t_crit, t_opt), (l1, l2) = build("adam-wd-smoothing-l2", dtype)
    for step, (x, y) in enumerate(batches(15, dtype)):
        np_loss, _ = np_training.train_step(np_model, np_crit, np_opt, x, y, l1=l1, l2=l2)
        t_loss, _ = t_training.train_step(t_model, t_crit, t_opt, torch.from_numpy(x), torch.from_numpy(y), l1=l1, l2=l2)
        assert_close(np.float32(np_loss), np.float32(t_loss), f"step {step}: data loss", dtype)
        assert_models_equal(np_model, np_opt, t_model, t_opt, dtype, f"step {step}")
        assert all(p.data.dtype == np.float32 for p in np_model.parameters())


def test_weight_decay_groups_match_torch():
    (np_model, _, np_opt), (t_model, _, t_opt), _ = build("adam-wd-smoothing-l2", np.float64)
    np_names = {id(p): n for n, p in np_model.named_parameters()}
    t_names = {id(p): n for n, p in t_model.named_parameters()}
    for g_np, g_t in zip(np_opt.param_groups, t_opt.param_groups):
        assert [np_names[id(p)] for p in g_np["params"]] == [t_names[id(p)] for p in g_t["params"]]
        assert g_np["weight_decay"] == g_t["weight_decay"]
    assert [np_names[id(p)] for p in np_opt.param_groups[0]["params"]] == [
        "layers.0.weight", "layers.3.weight", "layers.6.weight"
    ]


def test_train_step_default_reg_params_are_the_weights():
    """With reg_params=None the penalty covers exactly the ndim > 1 parameters, in both tracks."""
    (np_model, np_crit, np_opt), (t_model, t_crit, t_opt), _ = build("rmsprop-centered-no-dropout", np.float64)
    with torch.no_grad():  # non-zero biases, so a penalty that wrongly covered them would differ
        for name, p in t_model.named_parameters():
            if name.endswith("bias"):
                p.uniform_(0.5, 1.0)
    torch_to_numpy(t_model, np_model)
    x, y = next(batches(1, np.float64))
    _, np_reg = np_training.train_step(np_model, np_crit, np_opt, x, y, l1=1e-3, l2=1e-2)
    _, t_reg = t_training.train_step(t_model, t_crit, t_opt, torch.from_numpy(x), torch.from_numpy(y), l1=1e-3, l2=1e-2)
    assert_close(np.float64(np_reg), np.float64(t_reg), "penalty", np.float64)
    ws = [p for n, p in dict(np_model.named_parameters()).items() if n.endswith("weight")]
    assert [id(p) for p in np_training.weights(np_model)] == [id(p) for p in ws]
