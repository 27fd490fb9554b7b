"""Multi-label metrics equal scikit-learn's and a brute-force reference, masks and all.

scikit-learn has no mask: output k is compared with ``roc_auc_score(Y[keep_k, k], S[keep_k, k])``
where ``keep_k = Y[:, k] != -1``; without masked entries the whole matrix goes to
``roc_auc_score(Y, S, average=None | "macro")`` and ``average_precision_score(Y, S, average=None)``.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning as SklearnUndefined
from sklearn.metrics import average_precision_score, roc_auc_score

from chexvision.metrics import UndefinedMetricWarning
from chexvision.metrics_multilabel import (
    average_precision_per_output,
    choose_thresholds,
    macro_auc,
    multilabel_metrics,
    roc_auc_per_output,
)


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(s+ > s-) + ½ P(s+ = s-) over every positive/negative pair, by enumeration."""
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (pos.size * neg.size)


def brute_ap(y: np.ndarray, s: np.ndarray) -> float:
    """Σ over distinct thresholds t (high to low) of (R(t) − R(prev)) · P(t), by counting."""
    if y.sum() == 0:
        return math.nan
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        r, p = tp / y.sum(), tp / pred.sum()
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def random_case(seed: int, n: int = 60, k: int = 5, masked: float = 0.0, ties: bool = False):
    rng = np.random.default_rng(seed)
    prev = rng.uniform(0.05, 0.6, k)
    y = (rng.uniform(size=(n, k)) < prev).astype(np.int64)
    s = rng.normal(size=(n, k)) + y * rng.uniform(0, 2, k)
    if ties:
        s = np.round(s, 0)
    if masked:
        y[rng.uniform(size=(n, k)) < masked] = -1
    return y, s


def _per_column_sklearn(fn, y, s):
    out = []
    for j in range(y.shape[1]):
        keep = y[:, j] >= 0
        yk, sk = y[keep, j], s[keep, j]
        out.append(fn(yk, sk) if 0 < yk.sum() < yk.size else math.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_random_unmasked_equals_sklearn_whole_matrix(seed, ties):
    y, s = random_case(seed, ties=ties)
    if not all(0 < y[:, j].sum() < len(y) for j in range(y.shape[1])):
        pytest.skip("random draw with a one-class column (covered by the adversarial tests)")
    np.testing.assert_allclose(roc_auc_per_output(y, s), roc_auc_score(y, s, average=None), rtol=1e-12)
    np.testing.assert_allclose(average_precision_per_output(y, s), average_precision_score(y, s, average=None),
                               rtol=1e-12)
    m, undefined = macro_auc(y, s)
    assert undefined == []
    assert m == pytest.approx(roc_auc_score(y, s, average="macro"), rel=1e-12)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("masked", [0.1, 0.5], ids=["mask10", "mask50"])
def test_random_masked_equals_sklearn_per_column_and_brute_force(seed, masked):
    y, s = random_case(seed, n=40, masked=masked, ties=seed % 2 == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ours_auc = roc_auc_per_output(y, s)
        ours_ap = average_precision_per_output(y, s)
    np.testing.assert_allclose(ours_auc, _per_column_sklearn(roc_auc_score, y, s), rtol=1e-12)
    brute = [brute_auc(y[y[:, j] >= 0, j], s[y[:, j] >= 0, j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(ours_auc, brute, rtol=1e-12)
    ap_sk = [average_precision_score(y[y[:, j] >= 0, j], s[y[:, j] >= 0, j]) if (y[:, j] == 1).any() else math.nan
             for j in range(y.shape[1])]
    np.testing.assert_allclose(ours_ap, ap_sk, rtol=1e-12)
    np.testing.assert_allclose(ours_ap, [brute_ap(y[y[:, j] >= 0, j], s[y[:, j] >= 0, j])
                                         for j in range(y.shape[1])], rtol=1e-12)


def test_masked_entries_change_nothing_whatever_their_score():
    y, s = random_case(3, masked=0.3)
    s2 = s.copy()
    s2[y < 0] = np.random.default_rng(0).normal(size=int((y < 0).sum())) * 100
    np.testing.assert_array_equal(roc_auc_per_output(y, s), roc_auc_per_output(y, s2))
    np.testing.assert_array_equal(average_precision_per_output(y, s), average_precision_per_output(y, s2))


def test_output_without_positives_is_nan_named_and_left_out_of_the_macro_mean():
    y, s = random_case(4, k=4)
    y[:, 2] = 0  # no positive
    y[:, 3] = np.where(y[:, 3] == 1, 1, -1)  # only positives once the mask is applied
    names = ["a", "b", "c", "d"]
    with pytest.warns(UndefinedMetricWarning, match="ROC-AUC of c is undefined"):
        aucs = roc_auc_per_output(y, s, names)
    assert np.isnan(aucs[2]) and np.isnan(aucs[3])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m, undefined = macro_auc(y, s, names)
    assert undefined == ["c", "d"]
    assert {str(w.message).split(" is")[0] for w in rec} == {"ROC-AUC of c", "ROC-AUC of d"}
    sk = roc_auc_score(y[:, :2], s[:, :2], average=None)
    assert m == pytest.approx(sk.mean(), rel=1e-12)
    with pytest.warns(SklearnUndefined):
        full = roc_auc_score(np.where(y < 0, 1, y), s, average="macro")  # scikit-learn: one undefined -> nan
    assert math.isnan(full)
    with pytest.warns(UndefinedMetricWarning, match="average precision of c"):
        ap = average_precision_per_output(y, s, names)
    assert np.isnan(ap[2]) and ap[3] == 1.0  # only positives: AP is 1, as scikit-learn


def test_all_masked_or_all_undefined():
    y = np.full((5, 2), -1)
    s = np.zeros((5, 2))
    with pytest.warns(UndefinedMetricWarning):
        m, undefined = macro_auc(y, s, ["x", "y"])
    assert math.isnan(m) and undefined == ["x", "y"]


def test_one_output_is_the_binary_metric():
    y, s = random_case(7, k=1)
    assert roc_auc_per_output(y[:, 0], s[:, 0])[0] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]), rel=1e-12)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="differ in shape"):
        roc_auc_per_output(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="1, 0 or -1"):
        roc_auc_per_output(np.full((3, 2), 2), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="finite"):
        roc_auc_per_output(np.zeros((3, 2)), np.full((3, 2), np.nan))


def test_thresholds_per_output_and_fallback():
    y, s = random_case(8, k=3, masked=0.2)
    y[:, 1] = np.where(y[:, 1] == 0, 0, -1)  # one class
    with pytest.warns(UndefinedMetricWarning, match="threshold of b"):
        thr, fallback = choose_thresholds(y, s, "youden", None, ["a", "b", "c"])
    assert fallback == ["b"] and thr[1] == 0.5
    from chexvision.thresholds import youden_threshold

    keep = y[:, 0] >= 0
    assert thr[0] == youden_threshold(y[keep, 0], s[keep, 0])


def test_multilabel_metrics_sensitivity_specificity_by_counting():
    y, s = random_case(9, k=3, masked=0.2)
    thr = np.array([0.0, 0.5, -0.5])
    res = multilabel_metrics(y, s, thr, ["a", "b", "c"], n_boot=50, seed=1)
    for j, n in enumerate("abc"):
        keep = y[:, j] >= 0
        yk, pred = y[keep, j], s[keep, j] >= thr[j]
        o = res["outputs"][n]
        assert o["sensitivity"] == pytest.approx((pred & (yk == 1)).sum() / (yk == 1).sum())
        assert o["specificity"] == pytest.approx((~pred & (yk == 0)).sum() / (yk == 0).sum())
        assert o["prevalence"] == pytest.approx(yk.mean())
        assert o["n_masked"] == int((~keep).sum())
        assert o["roc_auc"] == pytest.approx(roc_auc_score(yk, s[keep, j]), rel=1e-12)
        lo, hi = o["roc_auc_ci"]
        assert lo <= o["roc_auc"] <= hi
    assert res["macro_auc"] == pytest.approx(np.mean([res["outputs"][n]["roc_auc"] for n in "abc"]))


def test_bootstrap_gets_each_findings_unmasked_rows_and_their_patients():
    y, s = random_case(10, n=30, k=3, masked=0.3)
    patients = np.array([f"p{i // 3}" for i in range(30)])
    seen = {}

    def ci(yk, sk, n_boot, seed, groups):
        seen[seed] = (yk.copy(), groups.copy())
        return 0.0, 1.0

    multilabel_metrics(y, s, np.zeros(3), ["a", "b", "c"], n_boot=10, seed=100, ci=ci, groups=patients)
    for j in range(3):
        if not 0 < (y[:, j] == 1).sum() < (y[:, j] >= 0).sum():
            continue
        yk, g = seen[100 + j]
        keep = y[:, j] >= 0
        np.testing.assert_array_equal(yk, y[keep, j])
        np.testing.assert_array_equal(g, patients[keep])
    with pytest.raises(ValueError, match="one patient id per row"):
        multilabel_metrics(y, s, np.zeros(3), n_boot=10, groups=patients[:5])
