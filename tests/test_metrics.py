"""chexvision.metrics, .thresholds and .bootstrap on cases small enough to compute by hand, plus input checks.

The scikit-learn comparison on thousands of random cases lives in parity/test_metrics.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from chexvision import bootstrap as B
from chexvision import metrics as M
from chexvision import thresholds as T
from chexvision.metrics import UndefinedMetricWarning

# The toy example used throughout (scikit-learn's docs use the same numbers):
#   sorted by score: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg)
#   pairs (pos, neg): (0.8, 0.4) win, (0.8, 0.1) win, (0.35, 0.4) loss, (0.35, 0.1) win -> AUC 3/4
Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_toy_roc_curve():
    fpr, tpr, thr = M.roc_curve(Y, S, drop_intermediate=False)
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1, 1])
    assert fpr.dtype == tpr.dtype == thr.dtype == np.float64


def test_toy_auc_is_three_quarters():
    assert M.roc_auc_score(Y, S) == 0.75


def test_tied_pair_counts_half():
    assert M.roc_auc_score([0, 1], [0.5, 0.5]) == 0.5
    # pos {1, 2} vs neg {1, 0}: tie 1/2, win, win, win -> 3.5 / 4
    assert M.roc_auc_score([0, 1, 1, 0], [1, 1, 2, 0]) == 0.875


def test_drop_intermediate_removes_collinear_points_only():
    # scores 4,3,2,1 all positive then 0 negative: the TP steps at 3 and 2 lie on the segment x = 0
    y, s = [1, 1, 1, 1, 0], [4, 3, 2, 1, 0]
    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=True)
    np.testing.assert_array_equal(thr, [np.inf, 4, 1, 0])
    np.testing.assert_array_equal(tpr, [0, 0.25, 1, 1])
    np.testing.assert_array_equal(fpr, [0, 0, 0, 1])
    assert M.roc_curve(y, s, drop_intermediate=False)[2].size == 6


def test_toy_precision_recall_curve_and_ap():
    prec, rec, thr = M.precision_recall_curve(Y, S)
    np.testing.assert_array_equal(thr, [0.1, 0.35, 0.4, 0.8])
    np.testing.assert_allclose(prec, [0.5, 2 / 3, 0.5, 1, 1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(rec, [1, 1, 0.5, 0.5, 0])
    # recall rises 0 -> 0.5 at precision 1, then 0.5 -> 1 at precision 2/3 (step-wise, not trapezoid)
    assert M.average_precision_score(Y, S) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)


def test_confusion_matrix_layout_and_absent_class():
    cm = M.confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(cm, [[1, 1], [1, 2]])
    cm = M.confusion_matrix([0, 0, 0], [0, 0, 0])
    assert cm.shape == (2, 2) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[3, 0], [0, 0]])


def test_threshold_metrics_by_hand():
    # threshold 0.4 -> predictions [0, 1, 0, 1]: tn 1, fp 1, fn 1, tp 1
    m = M.binary_metrics(Y, S, 0.4)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (1, 1, 1, 1)
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1"):
        assert m[key] == 0.5, key
    assert (m["n"], m["n_positive"], m["n_negative"]) == (4, 2, 2)
    assert m["positive_rate"] == 0.5 and m["predicted_positive_rate"] == 0.5 and m["threshold"] == 0.4
    # threshold 0.35 -> [0, 1, 1, 1]: tn 1, fp 1, fn 0, tp 2 (score >= threshold is positive)
    m = M.binary_metrics(Y, S, 0.35)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (1, 1, 0, 2)
    assert m["precision"] == 2 / 3 and m["recall"] == 1 and m["specificity"] == 0.5
    assert m["f1"] == 0.8 and m["balanced_accuracy"] == 0.75 and m["accuracy"] == 0.75


def test_single_metric_functions_match_binary_metrics():
    pred = (S >= 0.35).astype(int)
    m = M.binary_metrics(Y, S, 0.35)
    assert M.precision(Y, pred) == m["precision"]
    assert M.recall(Y, pred) == m["recall"]
    assert M.specificity(Y, pred) == m["specificity"]
    assert M.f1(Y, pred) == m["f1"]
    assert M.accuracy(Y, pred) == m["accuracy"]
    assert M.balanced_accuracy(Y, pred) == m["balanced_accuracy"]


def test_zero_division_policy():
    y, pred = [0, 1, 1], [0, 0, 0]  # nobody predicted positive: precision undefined
    with pytest.warns(UndefinedMetricWarning, match="precision is undefined"):
        assert math.isnan(M.precision(y, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit value is returned silently
        assert M.precision(y, pred, zero_division=0.0) == 0.0
        assert M.precision(y, pred, zero_division=1.0) == 1.0
        assert M.f1(y, pred) == 0.0  # tp = 0 with positives present: F1 is defined and 0
    with pytest.warns(UndefinedMetricWarning, match="specificity is undefined"):
        assert math.isnan(M.specificity([1, 1], [1, 0]))
    with pytest.warns(UndefinedMetricWarning, match="balanced_accuracy"):
        assert math.isnan(M.balanced_accuracy([1, 1], [1, 0]))
    with pytest.raises(ValueError, match="zero_division"):
        M.precision(y, pred, zero_division="zero")
    with pytest.warns(UndefinedMetricWarning):
        m = M.binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], threshold=1.0)
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["specificity"] == 1.0


def test_one_class_ranking_metrics_warn_and_give_nan():
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert math.isnan(M.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(UndefinedMetricWarning, match="no positive"):
        assert math.isnan(M.average_precision_score([0, 0], [0.1, 0.2]))
    with pytest.warns(UndefinedMetricWarning, match="no negative"):
        fpr, tpr, _ = M.roc_curve([1, 1], [0.1, 0.2])
    assert np.isnan(fpr).all() and not np.isnan(tpr).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.average_precision_score([1, 1], [0.1, 0.2]) == 1.0  # no negatives: AP is defined


# ----------------------------------------------------------------------------- thresholds


def test_youden_tie_break_takes_highest_threshold():
    # J at 0.8: 0.5 - 0 = 0.5; at 0.4: 0; at 0.35: 1 - 0.5 = 0.5; at 0.1: 0 -> tie, highest wins
    assert T.youden_threshold(Y, S) == 0.8


def test_youden_never_returns_inf_and_handles_chance():
    t = T.youden_threshold([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])  # one distinct score, J = 0 everywhere
    assert t == 0.5
    t = T.youden_threshold([1, 0], [0.2, 0.9])  # reversed: J = -1 at 0.9, 0 at 0.2
    assert t == 0.2


def test_youden_picks_the_separating_threshold():
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.6, 0.5, 0.9]  # J: 0.9 -> 0.5, 0.6 -> 0.5-1/3, 0.5 -> 1-1/3 (best), 0.2, 0.1
    assert T.youden_threshold(y, s) == 0.5


def test_threshold_for_sensitivity():
    assert T.threshold_for_sensitivity(Y, S, 1.0) == 0.35
    assert T.threshold_for_sensitivity(Y, S, 0.5) == 0.8
    assert T.threshold_for_sensitivity(Y, S, 0.6) == 0.35
    for target in (0.0, 1.5, -1):
        with pytest.raises(ValueError, match="target sensitivity"):
            T.threshold_for_sensitivity(Y, S, target)
    with pytest.raises(ValueError, match="0 positive"):
        T.threshold_for_sensitivity([0, 0], [0.1, 0.2], 0.9)


def test_choose_threshold():
    assert T.choose_threshold(Y, S) == 0.8
    assert T.choose_threshold(Y, S, "fixed", 0.5) == 0.5
    assert T.choose_threshold(Y, S, "sensitivity", 0.9) == 0.35
    with pytest.raises(ValueError, match="unknown threshold method"):
        T.choose_threshold(Y, S, "otsu")
    with pytest.raises(ValueError, match="takes no value"):
        T.choose_threshold(Y, S, "youden", 0.3)
    with pytest.raises(ValueError, match="needs a value"):
        T.choose_threshold(Y, S, "fixed")
    with pytest.raises(ValueError, match="finite"):
        T.choose_threshold(Y, S, "fixed", math.inf)
    with pytest.raises(ValueError, match="both classes"):
        T.choose_threshold([1, 1, 1], [0.1, 0.2, 0.3])


# ----------------------------------------------------------------------------- bootstrap


def _separable(n, seed, shift=0.8):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    return y, rng.normal(size=n) + shift * y


def test_resample_aucs_equal_auc_of_each_resample():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 30)
    s = np.round(rng.random(30), 1)  # heavy ties
    _, group = np.unique(s, return_inverse=True)
    idx = rng.integers(0, 30, (40, 30))
    got = B._resample_aucs(y, group, int(group.max()) + 1, idx)
    for b in range(40):
        assert got[b] == pytest.approx(M.roc_auc_score(y[idx[b]], s[idx[b]]), abs=1e-12), b


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 5000):
        y, s = _separable(n, seed=n)
        lo, hi = B.bootstrap_auc_ci(y, s, n_boot=300, seed=0)
        assert lo < M.roc_auc_score(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # width ~ 1/sqrt(n): 25x the data, ~5x narrower


def test_bootstrap_is_seeded():
    y, s = _separable(500, seed=1)
    a = B.bootstrap_auc_samples(y, s, n_boot=50, seed=7)
    np.testing.assert_array_equal(a, B.bootstrap_auc_samples(y, s, n_boot=50, seed=7))
    assert not np.array_equal(a, B.bootstrap_auc_samples(y, s, n_boot=50, seed=8))
    assert a.shape == (50,)


def test_bootstrap_skips_and_counts_one_class_resamples():
    y = np.array([1, 0, 0, 0, 0, 0])  # one positive in six: ~1/3 of resamples have none
    s = np.arange(6.0)
    samples = B.bootstrap_auc_samples(y, s, n_boot=200, seed=0)
    n_skipped = int(np.isnan(samples).sum())
    assert 30 < n_skipped < 110
    with pytest.warns(UndefinedMetricWarning, match=f"{n_skipped} of 200 bootstrap resamples"):
        lo, hi = B.bootstrap_auc_ci(y, s, n_boot=200, seed=0)
    assert 0.0 <= lo <= hi <= 1.0
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert all(math.isnan(v) for v in B.bootstrap_auc_ci([1, 1], [0.2, 0.3]))


def test_bootstrap_argument_checks():
    with pytest.raises(ValueError, match="n_boot"):
        B.bootstrap_auc_samples(Y, S, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        B.bootstrap_auc_ci(Y, S, alpha=1.0)


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "y, s, match",
    [
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 1], [0.1, np.nan], "finite"),
        ([0, 1], [0.1, np.inf], "finite"),
        ([0, 2], [0.1, 0.2], "binary labels"),
        ([-1, 1], [0.1, 0.2], "binary labels"),
        (["a", "b"], [0.1, 0.2], "binary labels"),
        ([0.0, np.nan], [0.1, 0.2], "binary labels"),
        ([], [], "empty"),
        ([0, 1], ["x", "y"], "real numbers"),
    ],
    ids=["2d", "length", "nan-score", "inf-score", "label-2", "label-minus1", "label-str", "label-nan", "empty",
         "score-str"],
)  # fmt: skip
@pytest.mark.parametrize(
    "fn",
    [M.roc_curve, M.roc_auc_score, M.precision_recall_curve, M.average_precision_score, T.youden_threshold,
     lambda y, s: M.binary_metrics(y, s, 0.5), lambda y, s: B.bootstrap_auc_ci(y, s, n_boot=5)],
    ids=["roc_curve", "roc_auc", "pr_curve", "ap", "youden", "binary_metrics", "bootstrap"],
)  # fmt: skip
def test_input_validation(fn, y, s, match):
    with pytest.raises(ValueError, match=match):
        fn(y, s)


def test_accepts_bool_and_float_labels_and_int_scores():
    assert M.roc_auc_score(np.array([False, False, True, True]), S) == 0.75
    assert M.roc_auc_score(np.array([0.0, 0.0, 1.0, 1.0], np.float32), S.astype(np.float32)) == 0.75
    assert M.roc_auc_score(Y, np.array([1, 4, 3, 8])) == 0.75
    with pytest.raises(ValueError, match="y_pred"):
        M.confusion_matrix([0, 1], [0, 3])
    with pytest.raises(ValueError, match="threshold"):
        M.binary_metrics(Y, S, math.nan)
