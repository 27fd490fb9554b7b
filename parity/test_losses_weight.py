"""BCEWithLogitsLoss ``weight`` with torch's semantics: element-wise rescaling, broadcast.

The multi-label task (``--task findings``) masks uncertain / unknown entries out of the loss with
an element-wise (N, K) weight of 0/1 and balances each finding with a (K,) ``pos_weight``; both
tracks must agree on the loss and d loss / d logits for every reduction (a random upstream array
for ``"none"``, a random upstream scalar otherwise), with and without label smoothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_nn import losses
from numpy_nn.gradcheck import gradcheck
from parity.helpers import DTYPE_IDS, DTYPES, TORCH_DTYPE
from parity.test_losses import binary_targets, check_loss, logits_for
from torch_ref import losses as torch_losses

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
reductions = pytest.mark.parametrize("reduction", ["mean", "sum", "none"])

N, K = 7, 4


def _weights(kind: str) -> np.ndarray:
    rng = np.random.default_rng(5)
    if kind == "mask":  # U-Ignore: 0 where the label is uncertain, 1 elsewhere; a whole row and column masked too
        w = (rng.uniform(size=(N, K)) > 0.3).astype(np.float64)
        w[2, :] = 0.0
        w[:, 1] = 0.0
        return w
    if kind == "elementwise":
        return rng.uniform(0.1, 2.0, (N, K))
    if kind == "per-output":  # (K,) broadcast over the batch
        return rng.uniform(0.1, 2.0, K)
    if kind == "per-example":  # (N, 1) broadcast over the outputs
        return rng.uniform(0.1, 2.0, (N, 1))
    raise ValueError(kind)


WEIGHTS = ["mask", "elementwise", "per-output", "per-example"]


@dtypes
@reductions
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["eps0", "eps0.1"])
@pytest.mark.parametrize("pw", [None, "vector"], ids=["pw-none", "pw-vector"])
@pytest.mark.parametrize("kind", WEIGHTS)
def test_bce_weight_equals_torch(kind, pw, smoothing, reduction, dtype):
    weight = _weights(kind)
    pos_weight = None if pw is None else np.linspace(0.5, 4.0, K)
    np_loss = losses.BCEWithLogitsLoss(pos_weight=pos_weight, reduction=reduction, label_smoothing=smoothing,
                                       weight=weight)
    tdt = TORCH_DTYPE[dtype]
    t_w = torch.as_tensor(weight, dtype=tdt)
    t_pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=tdt)

    def reference(x, t):  # torch's own functional BCE, smoothing spelled out
        return F.binary_cross_entropy_with_logits(x, t * (1 - smoothing) + smoothing / 2, t_w, pos_weight=t_pw,
                                                  reduction=reduction)

    logits, target = logits_for((N, K), dtype, seed=3), binary_targets((N, K), seed=4)
    check_loss(np_loss, reference, logits, target, dtype, seed=11)
    # the torch twin (label-smoothed BCE) gives the same with the same arguments
    t_loss = torch_losses.BCEWithLogitsLoss(pos_weight=pos_weight, reduction=reduction, label_smoothing=smoothing,
                                            weight=weight)
    check_loss(np_loss, t_loss, logits, target, dtype, seed=11)


@dtypes
def test_weight_reassigned_per_batch_as_a_mask(dtype):
    """The training loop sets ``crit.weight`` to each batch's mask; both tracks follow the new value."""
    np_loss = losses.BCEWithLogitsLoss(pos_weight=np.full(K, 2.0))
    t_loss = torch_losses.BCEWithLogitsLoss(pos_weight=np.full(K, 2.0))
    for seed in range(3):
        mask = (np.random.default_rng(seed).uniform(size=(N, K)) > 0.4).astype(dtype)
        np_loss.weight = mask
        t_loss.weight = torch.from_numpy(mask)
        check_loss(np_loss, t_loss, logits_for((N, K), dtype, seed=seed), binary_targets((N, K), seed=seed), dtype)


def test_masked_entries_do_not_matter():
    """A 0 weight removes an entry: changing its target or logit changes neither loss nor the other grads."""
    w = _weights("mask")
    x, t = logits_for((N, K), np.float64, seed=1), binary_targets((N, K), seed=2)
    crit = losses.BCEWithLogitsLoss(pos_weight=np.linspace(0.5, 2, K), weight=w, reduction="sum")
    a, ga = crit(x, t), crit.backward()
    t2, x2 = t.copy(), x.copy()
    t2[w == 0] = 1 - t2[w == 0]
    x2[w == 0] += 5.0
    b, gb = crit(x2, t2), crit.backward()
    assert a == b
    np.testing.assert_array_equal(ga, gb)
    assert not ga[w == 0].any()


def test_weight_broadcasting_beyond_the_input_is_an_error():
    crit = losses.BCEWithLogitsLoss(weight=np.ones((3, N, K)))
    with pytest.raises(ValueError, match="broadcast"):
        crit(np.zeros((N, K)), np.zeros((N, K)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", WEIGHTS)
def test_gradcheck_weight(kind, reduction):
    t = np.random.default_rng(8).uniform(size=(N, K))  # soft targets: every term of the formula matters
    crit = losses.BCEWithLogitsLoss(pos_weight=np.linspace(0.5, 3.0, K), weight=_weights(kind), reduction=reduction,
                                    label_smoothing=0.1)
    assert gradcheck(crit, (np.random.default_rng(9).standard_normal((N, K)), t))
