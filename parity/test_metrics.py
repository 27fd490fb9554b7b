"""chexvision.metrics vs scikit-learn and vs a brute-force pairwise AUC.

1,000 seeded random cases (n from 2 to 500, prevalence 1-99 %, scores rounded to force ties, four
score kinds), adversarial cases, invariances, and the one-class behaviour (where we deliberately
differ from scikit-learn, each difference is written next to its test).

Tolerances: curves and confusion matrices must be *equal* element by element (same counts, the
same single division); AUC and AP within 1e-12 (they sum in a different order).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics", reason="metrics parity compares against scikit-learn")
sklearn = pytest.importorskip("sklearn", minversion="1.3", reason="needs thresholds[0] = inf (scikit-learn >= 1.3)")

from chexvision import metrics as M  # noqa: E402
from chexvision import thresholds as T  # noqa: E402
from chexvision.metrics import UndefinedMetricWarning  # noqa: E402

N_CASES = 1000
ROC_NAMES = ("fpr", "tpr", "thresholds")
PR_NAMES = ("precision", "recall", "thresholds")
SCORE_KINDS = ("one-decimal", "two-decimals", "integers-0-4", "continuous")


def _make_cases(n_cases: int = N_CASES, seed: int = 20240601):
    """Random (y, s) pairs generated in one vectorised draw and split into cases.

    Every case holds both classes (its first two samples are forced to 1 and 0); the one-class
    cases have their own tests below.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 501, n_cases)
    prevalence = rng.uniform(0.01, 0.99, n_cases)
    signal = rng.uniform(-0.5, 2.0, n_cases)  # from reversed through chance to well separated
    kind = np.arange(n_cases) % len(SCORE_KINDS)
    case_of = np.repeat(np.arange(n_cases), sizes)  # (total,): which case each sample belongs to
    y = (rng.random(case_of.size) < prevalence[case_of]).astype(np.int64)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    y[starts], y[starts + 1] = 1, 0
    raw = rng.random(case_of.size) + signal[case_of] * y * 0.5
    k = kind[case_of]
    s = np.where(
        k == 0, np.round(raw, 1), np.where(k == 1, np.round(raw, 2), np.where(k == 2, np.floor(raw * 2.5), raw))
    )
    cases = []
    for i, (ys, ss) in enumerate(zip(np.split(y, starts[1:]), np.split(s, starts[1:]))):
        cases.append((f"case{i}-n{sizes[i]}-{SCORE_KINDS[kind[i]]}", ys, ss))
    return cases


CASES = _make_cases()


def _brute_force_auc(y, s) -> float:
    """Mean over all (positive, negative) pairs of [s⁺ > s⁻] + ½ [s⁺ = s⁻]."""
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _assert_curves_equal(ours, theirs, names, label):
    assert len(ours) == len(theirs) == len(names)
    for a, b, name in zip(ours, theirs, names):
        assert a.shape == b.shape, f"{label}: {name} length {a.shape} vs sklearn {b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=f"{label}: {name}")


# ----------------------------------------------------------------------------- random cases


def test_random_cases_cover_the_intended_range():
    sizes = np.array([c[1].size for c in CASES])
    prev = np.array([c[1].mean() for c in CASES])
    assert len(CASES) >= 1000 and sizes.min() == 2 and sizes.max() >= 490
    assert prev.min() < 0.05 and prev.max() > 0.95
    tied = np.mean([np.unique(c[2]).size < c[2].size for c in CASES])
    assert tied > 0.7  # most cases have ties


def test_roc_and_pr_curves_equal_sklearn_on_random_cases():
    for label, y, s in CASES:
        for drop in (True, False):
            _assert_curves_equal(
                M.roc_curve(y, s, drop_intermediate=drop), sk.roc_curve(y, s, drop_intermediate=drop),
                ROC_NAMES, f"{label} roc drop={drop}",
            )  # fmt: skip
            _assert_curves_equal(
                M.precision_recall_curve(y, s, drop_intermediate=drop),
                sk.precision_recall_curve(y, s, drop_intermediate=drop),
                PR_NAMES, f"{label} pr drop={drop}",
            )  # fmt: skip


def test_auc_and_ap_equal_sklearn_and_brute_force_on_random_cases():
    for label, y, s in CASES:
        auc = M.roc_auc_score(y, s)
        assert abs(auc - sk.roc_auc_score(y, s)) <= 1e-12, label
        assert abs(auc - _brute_force_auc(y, s)) <= 1e-12, label
        assert abs(M.average_precision_score(y, s) - sk.average_precision_score(y, s)) <= 1e-12, label


def _sk_threshold_metrics(y, pred) -> dict:
    prec, rec, f1, _ = sk.precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=np.nan)
    return {
        "precision": prec[1], "recall": rec[1], "specificity": rec[0], "f1": f1[1],
        "accuracy": sk.accuracy_score(y, pred), "balanced_accuracy": sk.balanced_accuracy_score(y, pred),
    }  # fmt: skip


def test_threshold_metrics_equal_sklearn_on_random_cases():
    rng = np.random.default_rng(5)
    n_undefined = 0
    for i, (label, y, s) in enumerate(CASES):
        # an observed score, or (every 10th case) one above all scores: nobody predicted positive
        threshold = s.max() + 1 if i % 10 == 0 else rng.choice(s)
        pred = (s >= threshold).astype(np.int64)
        cm = sk.confusion_matrix(y, pred, labels=[0, 1])
        np.testing.assert_array_equal(M.confusion_matrix(y, pred), cm, err_msg=label)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = M.binary_metrics(y, s, threshold)
        expected = _sk_threshold_metrics(y, pred)
        for key, want in expected.items():
            got = ours[key]
            # ours: nan + UndefinedMetricWarning by default; sklearn with zero_division=nan: nan
            assert (math.isnan(got) and math.isnan(want)) or abs(got - want) <= 1e-12, f"{label} {key}: {got} vs {want}"
        undefined = math.isnan(ours["precision"])
        n_undefined += undefined
        assert undefined == any(issubclass(w.category, UndefinedMetricWarning) for w in caught), label
        assert [ours[k] for k in ("tn", "fp", "fn", "tp")] == cm.ravel().tolist(), label
    assert n_undefined >= N_CASES // 10  # the zero-division path was exercised


# ----------------------------------------------------------------------------- adversarial cases

ADVERSARIAL = {
    "all-scores-equal": ([0, 1, 0, 1, 1], [0.3] * 5),
    "single-positive": ([0, 0, 0, 1, 0, 0], [0.1, 0.5, 0.2, 0.4, 0.9, 0.0]),
    "single-negative": ([1, 1, 0, 1, 1], [0.1, 0.5, 0.2, 0.4, 0.9]),
    "perfectly-separated": ([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8]),
    "reversed": ([1, 1, 1, 0, 0], [0.1, 0.2, 0.3, 0.7, 0.8]),
    "n2-separated": ([0, 1], [0.2, 0.8]),
    "n2-reversed": ([1, 0], [0.2, 0.8]),
    "n2-tied": ([1, 0], [0.5, 0.5]),
    "ties-across-classes": ([0, 1, 0, 1, 0, 1], [1, 1, 2, 2, 3, 3]),
    "negative-and-huge-scores": ([0, 1, 1, 0], [-1e300, 1e300, 5e-324, 0.0]),
}


@pytest.mark.parametrize("y, s", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_cases_equal_sklearn(y, s):
    y, s = np.array(y), np.array(s, dtype=np.float64)
    for drop in (True, False):
        _assert_curves_equal(M.roc_curve(y, s, drop), sk.roc_curve(y, s, drop_intermediate=drop), ROC_NAMES, "roc")
        _assert_curves_equal(
            M.precision_recall_curve(y, s, drop),
            sk.precision_recall_curve(y, s, drop_intermediate=drop),
            PR_NAMES,
            "pr",
        )
    assert abs(M.roc_auc_score(y, s) - sk.roc_auc_score(y, s)) <= 1e-12
    assert abs(M.roc_auc_score(y, s) - _brute_force_auc(y, s)) <= 1e-12
    assert abs(M.average_precision_score(y, s) - sk.average_precision_score(y, s)) <= 1e-12
    for threshold in np.unique(s):
        pred = (s >= threshold).astype(np.int64)
        ours = M.binary_metrics(y, s, threshold)
        for key, want in _sk_threshold_metrics(y, pred).items():
            assert abs(ours[key] - want) <= 1e-12, f"{key} at {threshold}"


def test_adversarial_known_values():
    assert M.roc_auc_score(*ADVERSARIAL["all-scores-equal"]) == 0.5
    assert M.roc_auc_score(*ADVERSARIAL["perfectly-separated"]) == 1.0
    assert M.roc_auc_score(*ADVERSARIAL["reversed"]) == 0.0
    assert M.roc_auc_score(*ADVERSARIAL["n2-tied"]) == 0.5
    fpr, tpr, thr = M.roc_curve(*ADVERSARIAL["all-scores-equal"])
    np.testing.assert_array_equal(thr, [np.inf, 0.3])
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])


# ----------------------------------------------------------------------------- invariances


def _sample(seed=11, n=300):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    s = np.round(rng.random(n) + 0.4 * y, 2)  # distinct values at least 0.01 apart
    return y, s


def test_permutation_invariance():
    y, s = _sample()
    perm = np.random.default_rng(0).permutation(y.size)
    assert M.roc_auc_score(y[perm], s[perm]) == M.roc_auc_score(y, s)
    assert M.average_precision_score(y[perm], s[perm]) == M.average_precision_score(y, s)
    for a, b in zip(M.roc_curve(y[perm], s[perm]), M.roc_curve(y, s)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "transform",
    [lambda s: 3 * s - 7, np.exp, lambda s: s**3, np.arctan, lambda s: -1 / (s + 1)],
    ids=["affine", "exp", "cube", "arctan", "minus-reciprocal"],
)
def test_strictly_increasing_transforms_change_nothing_but_thresholds(transform):
    y, s = _sample()
    t = transform(s)
    assert np.unique(t).size == np.unique(s).size  # the transform kept every distinct score distinct
    assert abs(M.roc_auc_score(y, t) - M.roc_auc_score(y, s)) <= 1e-12
    assert abs(M.average_precision_score(y, t) - M.average_precision_score(y, s)) <= 1e-12
    fa, ta, tha = M.roc_curve(y, s)
    fb, tb, thb = M.roc_curve(y, t)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_allclose(thb[1:], transform(tha[1:]), rtol=1e-12)
    assert T.youden_threshold(y, t) == pytest.approx(transform(T.youden_threshold(y, s)), rel=1e-12)


def test_negated_scores_and_flipped_labels_give_one_minus_auc():
    for _, y, s in CASES[:200]:
        auc = M.roc_auc_score(y, s)
        assert abs(M.roc_auc_score(y, -s) - (1 - auc)) <= 1e-12
        assert abs(M.roc_auc_score(1 - y, s) - (1 - auc)) <= 1e-12


# ----------------------------------------------------------------------------- one class present


@pytest.mark.parametrize("label", [0, 1], ids=["all-negative", "all-positive"])
def test_one_class_behaviour_is_as_documented(label):
    y = np.full(6, label)
    s = np.array([0.1, 0.4, 0.4, 0.2, 0.9, 0.5])
    # roc_auc_score: ours nan + UndefinedMetricWarning. scikit-learn >= 1.6 does the same
    # (its own UndefinedMetricWarning); older versions raised ValueError.
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert math.isnan(M.roc_auc_score(y, s))
    # roc_curve: the rate whose denominator is 0 is all nan, as scikit-learn; the other is equal.
    with pytest.warns(UndefinedMetricWarning):
        ours = M.roc_curve(y, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sk.roc_curve(y, s)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)  # assert_array_equal treats nan == nan
    if label == 0:
        # no positives: AP is nan here; scikit-learn returns 0.0 (a silent-looking 0) with a UserWarning.
        with pytest.warns(UndefinedMetricWarning, match="no positive"):
            assert math.isnan(M.average_precision_score(y, s))
        # PR curve: our recall is nan (then the final 0); scikit-learn sets it to 1.
        with pytest.warns(UndefinedMetricWarning, match="recall is undefined"):
            prec, rec, thr = M.precision_recall_curve(y, s)
        assert np.isnan(rec[:-1]).all() and rec[-1] == 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk_prec, _, sk_thr = sk.precision_recall_curve(y, s)
        np.testing.assert_array_equal(prec, sk_prec)
        np.testing.assert_array_equal(thr, sk_thr)
    else:
        # no negatives: every precision is 1 and AP is 1, defined, silent, equal to scikit-learn.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UndefinedMetricWarning)
            assert M.average_precision_score(y, s) == sk.average_precision_score(y, s) == 1.0
    # balanced accuracy: ours nan + warning; scikit-learn averages the recall of the classes present.
    with pytest.warns(UndefinedMetricWarning, match="balanced_accuracy"):
        assert math.isnan(M.balanced_accuracy(y, (s >= 0.4).astype(int)))
    # threshold choice is impossible without both classes: ValueError, never a made-up number.
    with pytest.raises(ValueError, match="both classes"):
        T.youden_threshold(y, s)
