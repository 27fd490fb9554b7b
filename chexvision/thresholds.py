"""Choosing a decision threshold from (validation) labels and scores: Youden's J, a target
sensitivity, or a fixed value.

Conventions as ``chexvision.metrics`` (binary ``y_true``, finite ``y_score``, ``score >= threshold``
-> predicted positive), except that these functions must return a usable number: where the
threshold is undefined (a class missing from ``y_true``) they raise ``ValueError``, never ``nan``.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import _binary_clf_curve, _check_pair


def _require_classes(y: np.ndarray, who: str, need_negatives: bool = True) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or (need_negatives and n_neg == 0):
        raise ValueError(
            f"{who}: the threshold is undefined because y_true has {n_pos} positive and {n_neg} negative "
            "samples; it needs both classes"
        )
    return n_pos, n_neg


def youden_threshold(y_true, y_score) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity − 1 = tpr − fpr.

    Searched over the ROC thresholds except ``thresholds[0] = inf`` (J = 0 there, and it would
    predict nobody positive): the result is always an observed score, so at least one sample is
    predicted positive. J is compared exactly in integer counts (``J·P·N = TP·N − FP·P``); among
    tied maxima the highest threshold wins (fewest predicted positives). When no threshold beats
    chance (max J <= 0) the result is still the first maximiser, possibly the lowest score
    (everyone predicted positive).

    Raises ``ValueError`` when ``y_true`` lacks a class.

    Shape: y_true, y_score (n,) -> float.
    """
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    n_pos, n_neg = _require_classes(y, "youden_threshold")
    fps, tps, thresholds = _binary_clf_curve(y, s)
    j_scaled = tps * n_neg - fps * n_pos  # J · P · N, exact integers
    return float(thresholds[int(np.argmax(j_scaled))])  # argmax: first = highest threshold


def threshold_for_sensitivity(y_true, y_score, target: float) -> float:
    """The highest threshold whose sensitivity (recall) is at least ``target``.

    Among the thresholds meeting the target it predicts the fewest positives, so it has the
    highest specificity. Always an observed score (the lowest score reaches sensitivity 1).

    Args:
        target: required sensitivity, in (0, 1].

    Raises ``ValueError`` for a target outside (0, 1] or when ``y_true`` has no positive.

    Shape: y_true, y_score (n,) -> float.
    """
    target = float(target)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    y, s = _check_pair(y_true, y_score, "y_score", scores=True)
    n_pos, _ = _require_classes(y, "threshold_for_sensitivity", need_negatives=False)
    _, tps, thresholds = _binary_clf_curve(y, s)
    reached = tps / n_pos >= target  # non-decreasing along decreasing thresholds; last is True
    return float(thresholds[int(np.argmax(reached))])


THRESHOLD_METHODS = ("youden", "fixed", "sensitivity")


def choose_threshold(y_true, y_score, method: str = "youden", value: float | None = None) -> float:
    """Pick a decision threshold from (validation) labels and scores.

    Args:
        method: ``"youden"`` (``youden_threshold``; ``value`` must be None), ``"fixed"``
            (returns ``value``, a finite number; the data are only validated), or
            ``"sensitivity"`` (``threshold_for_sensitivity`` with ``target=value``).
        value: see ``method``.

    Raises ``ValueError`` for an unknown method, a missing / superfluous ``value``, or data
    for which the method is undefined (see the functions above).
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
    if method == "youden":
        if value is not None:
            raise ValueError(f"threshold method 'youden' takes no value, got {value!r}")
        return youden_threshold(y_true, y_score)
    if value is None:
        raise ValueError(f"threshold method {method!r} needs a value")
    if method == "sensitivity":
        return threshold_for_sensitivity(y_true, y_score, value)
    _check_pair(y_true, y_score, "y_score", scores=True)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"a fixed threshold must be finite, got {value}")
    return value
