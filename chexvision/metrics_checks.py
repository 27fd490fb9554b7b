"""Input checks shared by ``chexvision.metrics``, ``chexvision.thresholds`` and ``chexvision.bootstrap``
(moved out of ``metrics.py``, which re-exports them): binary labels, finite scores, equal lengths,
and the warning an undefined metric gives. The conventions are in ``chexvision.metrics``'s docstring.
"""

from __future__ import annotations

import warnings

import numpy as np


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this input (e.g. one class present); the value returned is ``nan``.

    Twin: ``sklearn.exceptions.UndefinedMetricWarning`` (a separate class: scikit-learn is not a
    run-time dependency).
    """


# ----------------------------------------------------------------------------- input validation


def _check_labels(y, name: str) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of 0/1, or raise ``ValueError`` naming what was wrong."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold binary labels 0/1, got dtype {arr.dtype}")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        seen = np.unique(arr[bad])[:5]
        raise ValueError(f"{name} must hold binary labels 0/1 only, got also {seen.tolist()}")
    return arr.astype(np.int64)


def _check_scores(s, name: str = "y_score") -> np.ndarray:
    """Return ``s`` as a 1-D float64 array of finite values, or raise ``ValueError``."""
    arr = np.asarray(s)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr)).sum())} nan/inf value(s)")
    return arr


def _check_pair(y_true, y_other, other_name: str, scores: bool) -> tuple[np.ndarray, np.ndarray]:
    y = _check_labels(y_true, "y_true")
    o = _check_scores(y_other, other_name) if scores else _check_labels(y_other, other_name)
    if y.shape != o.shape:
        raise ValueError(f"y_true and {other_name} differ in length: {y.shape[0]} vs {o.shape[0]}")
    return y, o


def _warn(message: str) -> None:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
