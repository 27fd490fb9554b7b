"""Parity of every loss and the L1/L2 penalty with torch: values and gradients.

Scalar reductions go through ``assert_loss_parity`` (random upstream scalar); ``reduction="none"``
backpropagates a random upstream array through both tracks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from numpy_nn import losses
from numpy_nn.module import Parameter
from numpy_nn.regularization import penalty, penalty_backward
from parity.helpers import DTYPE_IDS, DTYPES, TORCH_DTYPE, assert_close, assert_loss_parity
from torch_ref import losses as torch_losses
from torch_ref.regularization import penalty as torch_penalty

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
reductions = pytest.mark.parametrize("reduction", ["mean", "sum", "none"])


def check_loss(np_loss, torch_loss, logits, target, dtype, seed=0):
    """Value and d loss / d logits vs torch, for any reduction."""
    if np_loss.reduction != "none":
        loss, _ = assert_loss_parity(np_loss, torch_loss, logits, target, dtype, seed)
        assert isinstance(loss, float)
        return
    logits = np.asarray(logits, dtype=dtype)
    if np.issubdtype(np.asarray(target).dtype, np.floating):  # as assert_loss_parity: targets in the logits' dtype
        target = np.asarray(target, dtype=dtype)
    lt = torch.tensor(logits, requires_grad=True)
    loss_np = np_loss(logits.copy(), np.array(target, copy=True))
    loss_t = torch_loss(lt, torch.from_numpy(np.array(target, copy=True)))
    assert np.all(np.isfinite(loss_np)), "loss has non-finite entries"
    assert_close(loss_np, loss_t, "loss", dtype)
    upstream = np.random.default_rng(seed + 1).standard_normal(loss_np.shape).astype(dtype)
    g_np = np_loss.backward(upstream.copy())
    loss_t.backward(torch.from_numpy(upstream))
    assert np.all(np.isfinite(g_np)), "grad_logits has non-finite entries"
    assert_close(g_np, lt.grad, "grad_logits", dtype)


def binary_targets(shape, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, shape) if soft else (rng.uniform(0, 1, shape) < 0.4).astype(np.float64)


def logits_for(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed + 100).standard_normal(shape) * scale).astype(dtype)


# -- BCEWithLogitsLoss ------------------------------------------------------------------------
BCE_SHAPES = {"batch1": (1, 1), "odd": (7, 1), "multi": (5, 3)}
POS_WEIGHTS = {"pw-none": None, "pw-scalar": 2.5, "pw-vector": "vector"}


def _pos_weight(kind, shape):
    if kind == "vector":
        return np.linspace(0.5, 3.0, shape[-1])
    return kind


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["eps0", "eps0.1"])
@pytest.mark.parametrize("pw", list(POS_WEIGHTS.values()), ids=list(POS_WEIGHTS))
@pytest.mark.parametrize("shape", list(BCE_SHAPES.values()), ids=list(BCE_SHAPES))
def test_bce_with_logits(shape, pw, smoothing, reduction, dtype):
    pos_weight = _pos_weight(pw, shape)
    np_loss = losses.BCEWithLogitsLoss(pos_weight=pos_weight, reduction=reduction, label_smoothing=smoothing)
    t_pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=TORCH_DTYPE[dtype])

    def reference(x, t):  # torch's own BCE on the smoothed targets, smoothing spelled out here
        return F.binary_cross_entropy_with_logits(x, t * (1 - smoothing) + smoothing / 2, pos_weight=t_pw,
                                                  reduction=reduction)

    check_loss(np_loss, reference, logits_for(shape, dtype), binary_targets(shape), dtype)


@dtypes
@reductions
def test_bce_soft_targets_and_weight(reduction, dtype):
    shape = (6, 2)
    weight = np.array([0.3, 1.7])
    np_loss = losses.BCEWithLogitsLoss(pos_weight=[1.5, 0.5], reduction=reduction, weight=weight)
    t_loss = nn.BCEWithLogitsLoss(weight=torch.tensor(weight, dtype=TORCH_DTYPE[dtype]), reduction=reduction,
                                  pos_weight=torch.tensor([1.5, 0.5], dtype=TORCH_DTYPE[dtype]))
    check_loss(np_loss, t_loss, logits_for(shape, dtype), binary_targets(shape, soft=True), dtype)


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["eps0", "eps0.2"])
@pytest.mark.parametrize("pw", [None, 4.0], ids=["pw-none", "pw4"])
def test_bce_extreme_logits_finite_and_equal_to_torch(pw, smoothing, reduction, dtype):
    x = np.array([[1e4], [-1e4], [1e4], [-1e4], [0.0], [88.0], [-104.0]])
    t = np.array([[1.0], [0.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    np_loss = losses.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction, label_smoothing=smoothing)
    t_loss = torch_losses.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction, label_smoothing=smoothing)
    check_loss(np_loss, t_loss, x, t, dtype)


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0], ids=["eps0", "eps0.1", "eps1"])
def test_torch_ref_bce_equals_torch_on_smoothed_targets(smoothing, reduction, dtype):
    """The torch twin is torch's BCE on t·(1 − ε) + ε/2 (with ε = 0: exactly nn.BCEWithLogitsLoss)."""
    tdt = TORCH_DTYPE[dtype]
    x = torch.from_numpy(logits_for((5, 2), dtype))
    t = torch.from_numpy(binary_targets((5, 2))).to(tdt)
    ours = torch_losses.BCEWithLogitsLoss(pos_weight=[2.0, 0.5], reduction=reduction, label_smoothing=smoothing)
    theirs = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 0.5], dtype=tdt), reduction=reduction)
    assert_close(ours(x, t).numpy(), theirs(x, t * (1 - smoothing) + smoothing / 2), "loss", dtype)


def test_smooth_binary_targets_by_hand():
    t = np.array([0.0, 1.0, 0.5])
    expected = np.array([0.1, 0.9, 0.5])  # ε = 0.2: 0 -> ε/2, 1 -> 1 − ε/2, 0.5 stays
    np.testing.assert_allclose(losses.smooth_binary_targets(t, 0.2), expected, rtol=1e-15)
    np.testing.assert_allclose(torch_losses.smooth_binary_targets(torch.from_numpy(t), 0.2).numpy(), expected,
                               rtol=1e-15)
    assert losses.smooth_binary_targets(t, 0.0) is t


@dtypes
def test_bce_keeps_dtype_and_accepts_integer_targets(dtype):
    crit = losses.BCEWithLogitsLoss(pos_weight=2.0)
    x = logits_for((4, 1), dtype)
    loss = crit(x, np.array([[1], [0], [1], [1]]))
    assert isinstance(loss, float)
    assert crit.backward().dtype == dtype
    assert crit.backward(np.float64(2.0)).dtype == dtype


def test_bce_argument_errors():
    with pytest.raises(ValueError, match="same as input size"):
        losses.BCEWithLogitsLoss()(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        losses.BCEWithLogitsLoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.BCEWithLogitsLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        torch_losses.BCEWithLogitsLoss(label_smoothing=-0.1)
    crit = losses.BCEWithLogitsLoss(reduction="none")
    crit(np.zeros((3, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="grad_output"):
        crit.backward()
    with pytest.raises(ValueError, match="grad_output"):
        crit.backward(np.ones(3))


def test_bce_pos_weight_is_a_buffer_like_torch():
    assert list(losses.BCEWithLogitsLoss(pos_weight=2.0).state_dict()) == ["pos_weight"]
    assert list(torch_losses.BCEWithLogitsLoss(pos_weight=2.0).state_dict()) == ["pos_weight"]
    assert list(losses.BCEWithLogitsLoss().state_dict()) == list(nn.BCEWithLogitsLoss().state_dict()) == []


# -- MSELoss ----------------------------------------------------------------------------------
@dtypes
@reductions
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (4, 3, 2)], ids=["batch1", "odd", "3d"])
def test_mse(shape, reduction, dtype):
    target = np.random.default_rng(9).standard_normal(shape)
    check_loss(losses.MSELoss(reduction), nn.MSELoss(reduction=reduction), logits_for(shape, dtype), target, dtype)


def test_mse_refuses_broadcasting():
    with pytest.raises(ValueError, match="differs"):
        losses.MSELoss()(np.zeros((4, 1)), np.zeros(4))


# -- CrossEntropyLoss ------------------------------------------------------------------------
CE_SHAPES = {"batch1": (1, 3), "odd": (7, 4), "spatial": (3, 4, 5)}


def class_targets(shape, seed=0):
    n_classes = shape[1]
    return np.random.default_rng(seed).integers(0, n_classes, size=shape[:1] + shape[2:])


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.15], ids=["eps0", "eps0.15"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", list(CE_SHAPES.values()), ids=list(CE_SHAPES))
def test_cross_entropy_class_targets(shape, weighted, smoothing, reduction, dtype):
    weight = np.linspace(0.5, 2.0, shape[1]) if weighted else None
    t_weight = None if weight is None else torch.tensor(weight, dtype=TORCH_DTYPE[dtype])
    np_loss = losses.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    t_loss = nn.CrossEntropyLoss(weight=t_weight, reduction=reduction, label_smoothing=smoothing)
    check_loss(np_loss, t_loss, logits_for(shape, dtype), class_targets(shape), dtype)


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["eps0", "eps0.1"])
def test_cross_entropy_ignore_index(smoothing, reduction, dtype):
    target = np.array([2, -100, 0, 1, -100, 3])
    weight = np.array([1.0, 0.5, 2.0, 1.5])
    np_loss = losses.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    t_loss = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=TORCH_DTYPE[dtype]), reduction=reduction,
                                 label_smoothing=smoothing)
    check_loss(np_loss, t_loss, logits_for((6, 4), dtype), target, dtype)


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["eps0", "eps0.2"])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)], ids=["2d", "spatial"])
def test_cross_entropy_probability_targets(shape, smoothing, reduction, dtype):
    rng = np.random.default_rng(4)
    probs = np.moveaxis(rng.dirichlet(np.ones(shape[1]), size=shape[:1] + shape[2:]), -1, 1)
    weight = np.array([0.7, 1.0, 1.9])
    np_loss = losses.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    t_loss = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=TORCH_DTYPE[dtype]), reduction=reduction,
                                 label_smoothing=smoothing)
    check_loss(np_loss, t_loss, logits_for(shape, dtype), probs.astype(dtype), dtype)


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["eps0", "eps0.1"])
def test_cross_entropy_extreme_logits(smoothing, reduction, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4], [1e4, 1e4, 1e4]])
    target = np.array([1, 0, 2, 2])  # confidently wrong, tied, and right
    np_loss = losses.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    t_loss = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    check_loss(np_loss, t_loss, x, target, dtype)


def test_cross_entropy_argument_errors():
    with pytest.raises(IndexError, match="out of bounds"):
        losses.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="target"):
        losses.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="input must be"):
        losses.CrossEntropyLoss()(np.zeros(3), np.array(0))


# -- L1 / L2 penalty --------------------------------------------------------------------------
PENALTIES = {"l1": (1e-2, 0.0), "l2": (0.0, 3e-2), "l1+l2": (1e-2, 3e-2)}


def _weights(dtype):
    rng = np.random.default_rng(8)
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((5,)), rng.standard_normal((2, 3, 2, 2))]
    ws[0][1, 2] = 0.0  # the kink of |w|: sign(0) = 0, as torch's abs backward
    ws[2][0, 0, 0, 0] = -0.0
    return [w.astype(dtype) for w in ws]


@dtypes
@pytest.mark.parametrize("strengths", list(PENALTIES.values()), ids=list(PENALTIES))
@pytest.mark.parametrize("preexisting_grad", [False, True], ids=["fresh", "accumulate"])
def test_penalty_value_and_gradient(strengths, preexisting_grad, dtype):
    l1, l2 = strengths
    ws = _weights(dtype)
    np_params = [Parameter(w.copy()) for w in ws]
    t_params = [torch.tensor(w, requires_grad=True) for w in ws]
    if preexisting_grad:  # penalty_backward adds into the loss's gradients, as autograd would
        for i, (p, tp) in enumerate(zip(np_params, t_params)):
            g = np.random.default_rng(i).standard_normal(p.shape).astype(dtype)
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())

    value = penalty(np_params, l1=l1, l2=l2)
    t_value = torch_penalty(t_params, l1=l1, l2=l2)
    assert isinstance(value, float)
    assert_close(np.asarray(value, dtype=dtype), t_value, "penalty", dtype)

    penalty_backward(np_params, l1=l1, l2=l2)
    t_value.backward()
    for i, (p, tp) in enumerate(zip(np_params, t_params)):
        assert_close(p.grad, tp.grad, f"grad param {i}", dtype)
    if l1 and not l2 and not preexisting_grad:
        assert np_params[0].grad[1, 2] == 0 and np_params[2].grad[0, 0, 0, 0] == 0


def test_penalty_zero_strength_touches_nothing():
    params = [Parameter(np.ones((2, 2)))]
    assert penalty(params) == 0.0 and penalty([], l1=1.0, l2=1.0) == 0.0
    penalty_backward(params)
    assert params[0].grad is None
    t = torch_penalty([torch.ones(2, 2, requires_grad=True)])
    assert t.item() == 0.0 and t.ndim == 0
    with pytest.raises(ValueError, match=">= 0"):
        penalty(params, l1=-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        torch_penalty(params, l2=-1.0)
