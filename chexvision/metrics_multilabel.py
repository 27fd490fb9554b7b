"""Multi-label metrics: every binary metric per output (finding), masked entries left out.

Twin: ``sklearn.metrics.roc_auc_score(Y, S, average=None | "macro")`` and
``average_precision_score(Y, S, average=None)`` on multi-label input; scikit-learn has no mask,
so ``parity/test_metrics_multilabel.py`` compares output k with scikit-learn on the rows where
``Y[:, k] != −1``.

Conventions (as ``chexvision.metrics``, per output):

- ``Y`` (N, K) holds 1 (present), 0 (absent) or −1 (masked: uncertain under U-Ignore, unknown);
  ``S`` (N, K) finite scores, higher = more likely present. A (N,) pair is one output (K = 1).
- Output k is scored on its unmasked rows only. An output whose unmasked rows hold one class (or
  none) has an undefined AUC: ``nan`` and one ``UndefinedMetricWarning`` naming it.
- The macro mean AUC averages the outputs with a defined AUC; the undefined ones are named in a
  warning and in the result (``auc_undefined``), never dropped without saying so. scikit-learn's
  ``average="macro"`` is ``nan`` as soon as one output is undefined; with all defined both agree.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .metrics import UndefinedMetricWarning, _warn, average_precision_score, binary_metrics, roc_auc_score
from .thresholds import choose_threshold


def _names(names, k: int) -> list[str]:
    if names is None:
        return [f"output {j}" for j in range(k)]
    names = [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} outputs")
    return names


def check_multilabel(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """(Y, S) as (N, K) int64 / float64, or ``ValueError`` saying what was wrong."""
    y, s = np.asarray(y_true), np.asarray(y_score)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    s = s.reshape(-1, 1) if s.ndim == 1 else s
    if y.ndim != 2 or s.ndim != 2:
        raise ValueError(f"y_true and y_score must be (N, K), got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and y_score {s.shape} differ in shape")
    if y.size == 0:
        raise ValueError("y_true is empty")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuf" or not np.isin(y, (-1, 0, 1)).all():
        raise ValueError("y_true must hold 1, 0 or -1 (masked) only")
    if s.dtype.kind not in "biuf" or not np.isfinite(s).all():
        raise ValueError("y_score must be finite real numbers")
    return y.astype(np.int64), s.astype(np.float64)


def _column(y: np.ndarray, s: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    keep = y[:, j] >= 0
    return y[keep, j], s[keep, j]


def _quiet(fn, *args):
    """fn(*args) with its UndefinedMetricWarnings swallowed (the caller warns once, by name)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*args)


def _defined(yk: np.ndarray) -> bool:
    return yk.size > 0 and 0 < int(yk.sum()) < yk.size


def roc_auc_per_output(y_true, y_score, names=None) -> np.ndarray:
    """ROC-AUC of each output on its unmasked rows; ``nan`` (with a warning naming it) where undefined.

    Shape: Y, S (N, K) -> (K,). Twin: ``sklearn.metrics.roc_auc_score(Y, S, average=None)``.
    """
    y, s = check_multilabel(y_true, y_score)
    names = _names(names, y.shape[1])
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        yk, sk = _column(y, s, j)
        if _defined(yk):
            out[j] = roc_auc_score(yk, sk)
        else:
            _warn(f"ROC-AUC of {names[j]} is undefined: {int(yk.sum())} positive and {int(yk.size - yk.sum())} "
                  f"negative unmasked samples; it is nan and left out of the macro mean")
    return out


def average_precision_per_output(y_true, y_score, names=None) -> np.ndarray:
    """Average precision of each output on its unmasked rows; ``nan`` (named warning) without positives.

    Shape: Y, S (N, K) -> (K,). Twin: ``sklearn.metrics.average_precision_score(Y, S, average=None)``
    (which gives 0.0 for an output with no positive).
    """
    y, s = check_multilabel(y_true, y_score)
    names = _names(names, y.shape[1])
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        yk, sk = _column(y, s, j)
        if yk.size and yk.sum() > 0:
            out[j] = average_precision_score(yk, sk)
        else:
            _warn(f"average precision of {names[j]} is undefined: no positive unmasked sample; it is nan")
    return out


def macro_auc(y_true, y_score, names=None) -> tuple[float, list[str]]:
    """Mean ROC-AUC over the outputs with a defined AUC, and the names of the undefined ones.

    ``nan`` if no output has a defined AUC. Twin: ``roc_auc_score(Y, S, average="macro")`` when
    every output is defined.
    """
    y, _ = check_multilabel(y_true, y_score)
    names = _names(names, y.shape[1])
    aucs = roc_auc_per_output(y_true, y_score, names)  # warns once per undefined output
    undefined = [n for n, a in zip(names, aucs) if math.isnan(a)]
    if len(undefined) == len(names):
        return math.nan, undefined
    return float(np.mean(aucs[~np.isnan(aucs)])), undefined


def choose_thresholds(y_true, y_score, method: str = "youden", value: float | None = None,
                      names=None) -> tuple[np.ndarray, list[str]]:
    """A threshold per output, chosen on its unmasked (validation) rows with ``choose_threshold``.

    Where the rule is undefined (one class among the unmasked rows) the output gets 0.5 and its
    name is returned in ``fallback`` (with a warning), so every output has a usable threshold.

    Returns:
        thresholds (K,) float64, fallback (names that got 0.5).
    """
    y, s = check_multilabel(y_true, y_score)
    names = _names(names, y.shape[1])
    out, fallback = np.empty(y.shape[1]), []
    for j in range(y.shape[1]):
        yk, sk = _column(y, s, j)
        if method == "fixed" or _defined(yk):
            out[j] = choose_threshold(yk if yk.size else np.zeros(1, np.int64), sk if sk.size else np.zeros(1),
                                      method, value)
        else:
            out[j] = 0.5
            fallback.append(names[j])
            _warn(f"threshold of {names[j]}: '{method}' is undefined on {yk.size} unmasked samples of one class; "
                  "0.5 is used")
    return out, fallback


def _prevalence(yk: np.ndarray) -> float:
    return float(yk.mean()) if yk.size else math.nan


def output_metrics(yk: np.ndarray, sk: np.ndarray, threshold: float, n_masked: int, *, n_boot: int = 0,
                   seed: int = 0, ci=None, groups=None) -> dict:
    """One output's metrics on its unmasked rows (``yk``, ``sk`` 1-D, validated; ``groups`` their patients)."""
    rec = {"n": int(yk.size), "n_masked": int(n_masked), "n_positive": int(yk.sum()),
           "prevalence": _prevalence(yk), "threshold": float(threshold)}
    defined = _defined(yk)
    rec["roc_auc"] = _quiet(roc_auc_score, yk, sk) if defined else math.nan
    rec["average_precision"] = _quiet(average_precision_score, yk, sk) if yk.sum() > 0 else math.nan
    if defined and n_boot:
        lo, hi = _quiet(ci, yk, sk, n_boot, seed, groups)
        rec["roc_auc_ci"] = [lo, hi]
    else:
        rec["roc_auc_ci"] = [math.nan, math.nan]
    if yk.size:
        bm = _quiet(binary_metrics, yk, sk, threshold)
        for k in ("accuracy", "balanced_accuracy", "recall", "specificity", "precision", "f1", "tp", "fp", "tn",
                  "fn"):
            rec[k] = bm[k]
        rec["sensitivity"] = rec["recall"]
    return rec


def _default_ci(y, s, n_boot, seed, groups):
    """``bootstrap_auc_ci``: patients resampled (the cluster bootstrap) when ids are given, images otherwise."""
    from . import bootstrap

    return bootstrap.bootstrap_auc_ci(y, s, n_boot=n_boot, seed=seed, groups=groups)


def multilabel_metrics(y_true, y_score, thresholds, names=None, *, n_boot: int = 0, seed: int = 0,
                       ci=None, groups=None) -> dict:
    """Every output's metrics at its threshold, plus the macro mean AUC.

    Args:
        thresholds: (K,) per-output thresholds (chosen on validation).
        n_boot: bootstrap resamples for each output's AUC interval (0: none).
        ci: ``fn(y, s, n_boot, seed, groups) -> (lo, hi)`` (default ``bootstrap.bootstrap_auc_ci``,
            patients resampled when ``groups`` are given).
        groups: (N,) patient ids, or None (images resampled).

    Returns:
        ``{"outputs": {name: {n, n_masked, n_positive, prevalence, threshold, roc_auc, roc_auc_ci,
        average_precision, sensitivity, specificity, ...}}, "macro_auc", "auc_defined",
        "auc_undefined"}``; an undefined value is ``nan`` and the output is named in
        ``auc_undefined`` (with one warning each).
    """
    y, s = check_multilabel(y_true, y_score)
    names = _names(names, y.shape[1])
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y.shape[1],))
    ci = ci or _default_ci
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and groups.shape != (y.shape[0],):
        raise ValueError(f"groups must hold one patient id per row, shape ({y.shape[0]},), got {groups.shape}")
    outputs = {}
    for j, name in enumerate(names):
        yk, sk = _column(y, s, j)
        gk = None if groups is None else groups[y[:, j] >= 0]
        outputs[name] = output_metrics(yk, sk, thresholds[j], int((y[:, j] < 0).sum()), n_boot=n_boot,
                                       seed=seed + j, ci=ci, groups=gk)
    undefined = [n for n in names if math.isnan(outputs[n]["roc_auc"])]
    for n in undefined:
        o = outputs[n]
        _warn(f"ROC-AUC of {n} is undefined: {o['n_positive']} positive and {o['n'] - o['n_positive']} negative "
              "unmasked samples; it is nan and left out of the macro mean")
    defined = [n for n in names if n not in undefined]
    macro = float(np.mean([outputs[n]["roc_auc"] for n in defined])) if defined else math.nan
    return {"outputs": outputs, "macro_auc": macro, "auc_defined": defined, "auc_undefined": undefined}


def validation_record(y_true, logits, method: str, value, names) -> dict:
    """The per-epoch validation entry of ``train`` for K outputs (masked entries left out).

    ``val_loss``: BCE on logits, mean over unmasked entries; ``val_accuracy``: at 0.5, over unmasked
    entries; ``val_auc``: the macro mean AUC over outputs with a defined AUC (what picks the best
    epoch); ``threshold``: per output, chosen on validation (a list, in output order).
    """
    from numpy_nn.layers import sigmoid
    from numpy_nn.losses import BCEWithLogitsLoss

    y, x = check_multilabel(y_true, logits)
    keep = y >= 0
    prob = sigmoid(x)
    loss = BCEWithLogitsLoss(weight=keep.astype(np.float64), reduction="sum")(x, np.where(keep, y, 0).astype(float))
    with warnings.catch_warnings():  # one-class outputs are named in metrics.json; not every epoch
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        auc, _ = macro_auc(y, prob, names)
        thresholds, _ = choose_thresholds(y, prob, method, value, names)
    n = max(int(keep.sum()), 1)
    return {"val_loss": float(loss / n), "val_accuracy": float(((prob >= 0.5) == (y == 1))[keep].sum() / n),
            "val_auc": float(auc), "threshold": [float(t) for t in thresholds]}
