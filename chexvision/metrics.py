"""Binary screening metrics in plain NumPy: ROC / PR curves, AUC, threshold metrics.

Twin: ``sklearn.metrics`` (``roc_curve``, ``roc_auc_score``, ``precision_recall_curve``,
``average_precision_score``, ``confusion_matrix``, ``precision_score`` ...). scikit-learn is never
imported here; ``parity/test_metrics.py`` proves the two agree on thousands of random cases with ties.
Choosing a threshold lives in ``chexvision.thresholds``, the bootstrap interval of the AUC in
``chexvision.bootstrap``; both follow the conventions below and reuse its input checks
(``chexvision.metrics_checks``, re-exported here).

Conventions (every function):

- ``y_true`` holds binary labels, 1 = positive (abnormal), 0 = negative (normal); bool, integer or
  float 0/1 are accepted. ``y_score`` holds finite real scores, higher = more abnormal.
- The decision rule is ``score >= threshold`` -> predicted positive.
- Inputs must be 1-D, non-empty and of equal length; anything else is a ``ValueError`` that says
  what was received.
- A quantity that is undefined for the input (an AUC with one class present, a precision with no
  predicted positive...) gives ``nan`` and an ``UndefinedMetricWarning`` saying why — never a
  silent 0. Functions that must return a usable number (the threshold choosers in
  ``chexvision.thresholds``) raise ``ValueError`` instead. Each docstring says which.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics_checks import (  # noqa: F401 - re-exported: thresholds, bootstrap and the tests import them from here
    UndefinedMetricWarning,
    _check_labels,
    _check_pair,
    _check_scores,
    _warn,
)

# ----------------------------------------------------------------------------- ranking metrics


def _binary_clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts at every distinct score, highest first (validated inputs).

    Returns ``fps, tps, thresholds``: ``tps[i]`` / ``fps[i]`` is the number of positives /
    negatives with ``score >= thresholds[i]``; ``thresholds`` are the distinct scores, decreasing.
    Tied scores form one point, which is what makes AUC count a tied pair as 1/2.
    """
    order = np.argsort(s, kind="stable")[::-1]  # decreasing score; order inside a tie is irrelevant
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y_sorted)[last_of_value]
    fps = 1 + last_of_value - tps
    return fps, tps, s_sorted[last_of_value]


def roc_curve(y_true, y_score, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic curve.

    ``fpr[i] = FP(t_i) / N`` and ``tpr[i] = TP(t_i) / P`` where ``FP(t)`` / ``TP(t)`` count the
    negatives / positives with ``score >= t``.

    Args:
        y_true: binary labels (1 = positive).
        y_score: scores, higher = more positive.
        drop_intermediate: drop points that lie on a straight segment between their neighbours
            (where both second differences of the FP and TP counts are zero), as scikit-learn
            does; the plotted curve and its area do not change.

    Returns:
        fpr: element i is the false positive rate of predictions with ``score >= thresholds[i]``.
        tpr: element i is the true positive rate of predictions with ``score >= thresholds[i]``.
        thresholds: decreasing; ``thresholds[0] = inf`` (nobody predicted positive, the point
            (0, 0)), then the distinct values of ``y_score`` from highest to lowest, so the last
            point is (1, 1).

    Undefined: with no negatives ``fpr`` is all ``nan``, with no positives ``tpr`` is all ``nan``,
    each with an ``UndefinedMetricWarning`` (as scikit-learn).

    Shape: y_true, y_score (n,) -> fpr, tpr, thresholds (m,), 2 <= m <= n + 1.

    Twin: ``sklearn.metrics.roc_curve`` (>= 1.3, where ``thresholds[0]`` became ``inf``).

    Example:
        >>> roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])[0]
        array([0. , 0. , 0.5, 0.5, 1. ])
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    fps, tps, thresholds = _binary_clf_curve(y, s)
    if drop_intermediate and fps.size > 2:
        # A point is kept when the curve turns there: a non-zero second difference in FP or TP.
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]  # the (0, 0) point, reached only by threshold inf
    thresholds = np.r_[np.inf, thresholds]
    if fps[-1] == 0:
        _warn("roc_curve: no negative samples in y_true; the false positive rate is undefined (nan)")
        fpr = np.full(fps.shape, np.nan)
    else:
        fpr = fps / fps[-1]
    if tps[-1] == 0:
        _warn("roc_curve: no positive samples in y_true; the true positive rate is undefined (nan)")
        tpr = np.full(tps.shape, np.nan)
    else:
        tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def roc_auc_score(y_true, y_score) -> float:
    """Area under the ROC curve.

    AUC = P(score⁺ > score⁻) + ½ P(score⁺ = score⁻) over all positive/negative pairs, computed
    as the trapezoid area under the full ROC curve in integer counts:
    ``Σ_i (FP_i − FP_{i−1}) (TP_i + TP_{i−1}) / (2 P N)`` — exact up to the one final division.

    Undefined: with one class present returns ``nan`` and warns ``UndefinedMetricWarning``
    (scikit-learn >= 1.6 does the same; older versions raised ``ValueError``).

    Shape: y_true, y_score (n,) -> float.

    Twin: ``sklearn.metrics.roc_auc_score`` (binary).

    Example:
        >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    fps, tps, _ = _binary_clf_curve(y, s)
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    if n_pos == 0 or n_neg == 0:
        _warn(f"roc_auc_score: only one class present in y_true ({n_pos} positive, {n_neg} negative); AUC is nan")
        return math.nan
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    twice_area = int(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))  # integer: no rounding until the end
    return twice_area / (2 * n_pos * n_neg)


def precision_recall_curve(
    y_true, y_score, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall pairs at every distinct score.

    ``precision(t) = TP(t) / (TP(t) + FP(t))``, ``recall(t) = TP(t) / P``, counting samples with
    ``score >= t``. Every threshold is an observed score, so ``TP + FP >= 1`` and precision is
    always defined.

    Args:
        y_true: binary labels (1 = positive).
        y_score: scores, higher = more positive.
        drop_intermediate: keep only the first and last threshold of each run of equal TP
            (equal recall), as scikit-learn's option of the same name.

    Returns:
        precision: element i is the precision of predictions with ``score >= thresholds[i]``;
            the last element is 1 (the empty prediction, by convention).
        recall: element i is the recall of predictions with ``score >= thresholds[i]``,
            decreasing; the last element is 0.
        thresholds: the distinct scores, increasing (reversed from ``roc_curve``).

    Undefined: with no positives ``recall`` is ``nan`` (except the final 0) with an
    ``UndefinedMetricWarning``. scikit-learn instead sets recall to 1 with a ``UserWarning``.

    Shape: y_true, y_score (n,) -> precision, recall (m + 1,), thresholds (m,), m <= n.

    Twin: ``sklearn.metrics.precision_recall_curve``.

    Example:
        >>> precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])[0]
        array([0.5       , 0.66666667, 0.5       , 1.        , 1.        ])
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    fps, tps, thresholds = _binary_clf_curve(y, s)
    if drop_intermediate and fps.size > 2:
        # Inside a run of equal TP the curve is a horizontal segment: keep its two ends.
        keep = np.r_[True, (np.diff(tps[:-1]) != 0) | (np.diff(tps[1:]) != 0), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    prec = tps / (tps + fps)
    if tps[-1] == 0:
        _warn("precision_recall_curve: no positive samples in y_true; recall is undefined (nan)")
        rec = np.full(tps.shape, np.nan)
    else:
        rec = tps / tps[-1]
    return np.r_[prec[::-1], 1.0], np.r_[rec[::-1], 0.0], thresholds[::-1]


def average_precision_score(y_true, y_score) -> float:
    """Average precision: the step-wise (not trapezoid) area under the precision-recall curve.

    ``AP = Σ_i (R_i − R_{i−1}) P_i`` over the distinct thresholds from highest to lowest, with
    ``R_0 = 0``: each rise in recall is weighted by the precision reached there.

    Undefined: with no positives returns ``nan`` and warns ``UndefinedMetricWarning``
    (scikit-learn returns 0.0 with a ``UserWarning``). With no negatives AP is 1.

    Shape: y_true, y_score (n,) -> float.

    Twin: ``sklearn.metrics.average_precision_score`` (binary).

    Example:
        >>> round(average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
        0.833333
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    fps, tps, _ = _binary_clf_curve(y, s)
    n_pos = int(tps[-1])
    if n_pos == 0:
        _warn("average_precision_score: no positive samples in y_true; AP is nan")
        return math.nan
    new_positives = np.diff(np.r_[0, tps])  # (R_i − R_{i−1}) · P
    return float(np.sum(new_positives * (tps / (tps + fps))) / n_pos)


# ----------------------------------------------------------------------------- threshold metrics


def confusion_matrix(y_true, y_pred) -> np.ndarray:
    """Counts ``[[tn, fp], [fn, tp]]``: row = true class (0, 1), column = predicted class (0, 1).

    Always (2, 2) int64, even when a class is absent from both inputs.

    Shape: y_true, y_pred (n,) -> (2, 2).

    Twin: ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=[0, 1])``.

    Example:
        >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1]).tolist()
        [[1, 1], [0, 2]]
    """
    y, p = _check_pair(y_true, y_pred, "y_pred", scores=False)
    return np.bincount(2 * y + p, minlength=4).astype(np.int64).reshape(2, 2)  # cell 2·true + pred


def _ratio(num: int, den: int, zero_division, message: str) -> float:
    """num / den, or the zero-division policy's value (with a warning for ``"warn"``)."""
    if den != 0:
        return num / den
    if isinstance(zero_division, str):
        if zero_division != "warn":
            raise ValueError(f"zero_division must be 'warn' or a number, got {zero_division!r}")
        _warn(message + "; returning nan")
        return math.nan
    return float(zero_division)


def precision(y_true, y_pred, zero_division="warn") -> float:
    """Positive predictive value ``tp / (tp + fp)``.

    Zero division (nobody predicted positive): ``zero_division="warn"`` (default) returns ``nan``
    with an ``UndefinedMetricWarning``; a number (``0.0``, ``1.0``, ``nan``) is returned silently.
    scikit-learn's ``"warn"`` returns 0.0; pass ``zero_division=nan`` there to match our default.

    Twin: ``sklearn.metrics.precision_score``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    return _ratio(tp, tp + fp, zero_division, "precision is undefined: no sample is predicted positive")


def recall(y_true, y_pred, zero_division="warn") -> float:
    """Sensitivity (true positive rate) ``tp / (tp + fn)``.

    Zero division (no positive in ``y_true``): policy as ``precision``.

    Twin: ``sklearn.metrics.recall_score``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    return _ratio(tp, tp + fn, zero_division, "recall is undefined: no positive sample in y_true")


def specificity(y_true, y_pred, zero_division="warn") -> float:
    """True negative rate ``tn / (tn + fp)``.

    Zero division (no negative in ``y_true``): policy as ``precision``.

    Twin: ``sklearn.metrics.recall_score(..., pos_label=0)``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    return _ratio(tn, tn + fp, zero_division, "specificity is undefined: no negative sample in y_true")


def f1(y_true, y_pred, zero_division="warn") -> float:
    """Harmonic mean of precision and recall, ``2 tp / (2 tp + fp + fn)``.

    Zero division (``tp + fp + fn = 0``: no positive, none predicted): policy as ``precision``.
    When only precision is undefined but positives exist, F1 is 0 (tp = 0), as scikit-learn.

    Twin: ``sklearn.metrics.f1_score``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    return _ratio(2 * tp, 2 * tp + fp + fn, zero_division, "f1 is undefined: no positive sample, none predicted")


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions ``(tp + tn) / n``. Always defined (inputs are non-empty).

    Twin: ``sklearn.metrics.accuracy_score``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    return (tp + tn) / (tn + fp + fn + tp)


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of sensitivity and specificity, ``(tp / (tp + fn) + tn / (tn + fp)) / 2``.

    Undefined: with one class in ``y_true`` returns ``nan`` and warns ``UndefinedMetricWarning``.
    (scikit-learn instead averages over the classes present, with a ``UserWarning``.)

    Twin: ``sklearn.metrics.balanced_accuracy_score``.
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).tolist()
    if tp + fn == 0 or tn + fp == 0:
        _warn(f"balanced_accuracy is undefined: y_true has {tp + fn} positive and {tn + fp} negative samples")
        return math.nan
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


def binary_metrics(y_true, y_score, threshold: float, zero_division="warn") -> dict:
    """Every threshold metric at one threshold, predicting positive where ``score >= threshold``.

    Returns a dict of plain Python numbers:
        ``threshold``; ``n``, ``n_positive``, ``n_negative``; ``positive_rate`` (fraction of
        ``y_true`` that is positive, the prevalence); ``predicted_positive_rate``; ``tn``, ``fp``,
        ``fn``, ``tp``; ``accuracy``, ``balanced_accuracy``, ``precision``, ``recall``
        (= sensitivity), ``specificity``, ``f1``.

    Undefined ratios follow ``zero_division`` (see ``precision``) and ``balanced_accuracy``.

    Shape: y_true, y_score (n,), threshold scalar -> dict.
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must be a number, got nan")
    pred = (s >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(y, pred).tolist()
    n = tn + fp + fn + tp
    if tp + fn == 0 or tn + fp == 0:
        _warn(f"balanced_accuracy is undefined: y_true has {tp + fn} positive and {tn + fp} negative samples")
        bal = math.nan
    else:
        bal = (tp / (tp + fn) + tn / (tn + fp)) / 2
    return {
        "threshold": threshold,
        "n": n,
        "n_positive": tp + fn,
        "n_negative": tn + fp,
        "positive_rate": (tp + fn) / n,
        "predicted_positive_rate": (tp + fp) / n,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": bal,
        "precision": _ratio(tp, tp + fp, zero_division, "precision is undefined: no sample is predicted positive"),
        "recall": _ratio(tp, tp + fn, zero_division, "recall is undefined: no positive sample in y_true"),
        "specificity": _ratio(tn, tn + fp, zero_division, "specificity is undefined: no negative sample in y_true"),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, zero_division, "f1 is undefined: no positive sample, none predicted"),
    }
