"""Evaluation artifacts: metrics.json, raw scores, plots and a model-card style REPORT.md.

``write_evaluation`` is what ``python -m chexvision evaluate`` calls once a track has scored the
validation and test images. The decision threshold is chosen on validation only and then
applied unchanged to the test split, so the test numbers are an honest estimate.

Everything is computed and every plot rendered in memory first; only then are files written,
each atomically, ``metrics.json`` last. A run directory therefore never holds half an evaluation:
if ``metrics.json`` is there, the files it lists are the ones that go with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from numpy_nn.serialization import atomic_write

from . import metrics as M
from . import plots
from .bootstrap import bootstrap_auc_samples, percentile_ci
from .errors import UserError
from .model_card import THRESHOLD_RULE, report_markdown, small_validation_warning
from .model_card import _fmt as _fmt  # moved to model_card; external.py imports it from here
from .thresholds import choose_threshold

SCHEMA = "chexvision.metrics/1"
ALPHA = 0.05  # the CI written is the 95% percentile-bootstrap interval

# Every file write_evaluation may write; those not written by a call are removed (stale).
ARTIFACTS = (
    "metrics.json", "REPORT.md", "val_scores.npy", "val_labels.npy", "test_scores.npy", "test_labels.npy",
    "loss_curve.png", "roc.png", "pr.png", "confusion.png", "confusion_val.png",
    "explain_tp.png", "explain_fp.png", "explain_fn.png",
    "roc_grid.png",  # --task findings (chexvision.report_findings)
)  # fmt: skip


# ----------------------------------------------------------------------------- numbers


def _jsonable(obj):
    """Plain JSON types: numpy -> Python, tuples -> lists, Paths -> str, nan/inf -> None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _check_split(name: str, scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(scores float64, labels int64)``; a user-facing ``UserError`` otherwise."""
    try:
        y, s = M._check_pair(labels, scores, "scores", scores=True)
    except ValueError as e:
        raise UserError(f"{name} split: {e}") from e
    return s, y


def split_metrics(scores, labels, threshold: float, *, n_boot: int = 1000, seed: int = 0, name: str = "",
                  groups=None) -> dict:
    """All numbers reported for one split at a given threshold (plain Python types, nan kept).

    Keys: ``name``, the ``binary_metrics`` keys (counts, rates, accuracy, balanced_accuracy,
    precision, recall, specificity, f1, tn/fp/fn/tp, threshold), ``roc_auc``, ``roc_auc_ci95``
    ([lo, hi]), ``bootstrap_skipped`` (resamples with one class), ``average_precision``,
    ``youden_j`` (recall + specificity − 1), ``confusion_matrix`` ([[tn, fp], [fn, tp]]),
    ``roc_curve`` ({fpr, tpr, thresholds}; thresholds[0] is inf) and ``pr_curve``
    ({precision, recall, thresholds}) as NumPy arrays, exact, collinear intermediate points dropped,
    ``bootstrap_unit`` ("patients" when ``groups`` (one patient id per image) has a patient with
    several images: the cluster bootstrap; "images" otherwise) and ``n_patients``.
    """
    s, y = _check_split(name or "evaluated", scores, labels)
    out = {"name": name}
    out.update(M.binary_metrics(y, s, threshold))
    out["youden_j"] = out["recall"] + out["specificity"] - 1
    out["roc_auc"] = M.roc_auc_score(y, s)
    if groups is not None and len(groups) != len(y):
        raise UserError(f"{name or 'evaluated'} split: {len(groups)} patient ids for {len(y)} scores")
    n_patients = len(np.unique(groups)) if groups is not None else None
    cluster = n_patients is not None and n_patients < len(y)
    out["bootstrap_unit"] = "patients" if cluster else "images"
    if n_patients is not None:
        out["n_patients"] = n_patients
    if out["n_positive"] and out["n_negative"]:
        samples = bootstrap_auc_samples(y, s, n_boot=n_boot, seed=seed, groups=groups if cluster else None)
        out["roc_auc_ci95"] = list(percentile_ci(samples, ALPHA))
        out["bootstrap_skipped"] = int(np.isnan(samples).sum())
    else:
        out["roc_auc_ci95"] = [math.nan, math.nan]
        out["bootstrap_skipped"] = n_boot
    out["average_precision"] = M.average_precision_score(y, s)
    out["confusion_matrix"] = [[out["tn"], out["fp"]], [out["fn"], out["tp"]]]
    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=True)
    out["roc_curve"] = {"fpr": fpr, "tpr": tpr, "thresholds": thr}
    prec, rec, thr = M.precision_recall_curve(y, s, drop_intermediate=True)
    out["pr_curve"] = {"precision": prec, "recall": rec, "thresholds": thr}
    return out


# ----------------------------------------------------------------------------- summaries


def _training_summary(history: list[dict]) -> dict:
    summary = {"epochs": len(history)}
    aucs = [(h.get("val_auc"), h.get("epoch", i + 1)) for i, h in enumerate(history)]
    aucs = [(a, e) for a, e in aucs if a is not None and math.isfinite(float(a))]
    if aucs:
        best, epoch = max(aucs, key=lambda t: t[0])
        summary.update(best_val_auc=float(best), best_val_auc_epoch=epoch)
    if history:
        last = history[-1]
        for key in ("train_loss", "train_data_loss", "val_loss", "val_auc"):
            if last.get(key) is not None:
                summary[f"final_{key}"] = float(last[key])
    return summary


MAX_CURVE_POINTS = 1000  # per curve in metrics.json; the exact curves follow from the saved scores


def _thin_curve(curve: dict) -> dict:
    """At most ``MAX_CURVE_POINTS`` evenly spaced points of a curve (both ends kept), as lists.

    Indices are shared by all arrays; ``thresholds`` of a PR curve is one shorter (the final
    (recall 0, precision 1) point has no threshold), so it keeps the indices it has.
    """
    keys = list(curve)
    n = len(curve[keys[0]])
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_CURVE_POINTS)).round().astype(np.int64))
    out = {k: np.asarray(curve[k])[idx[idx < len(curve[k])]].tolist() for k in keys}
    out["thinned"] = bool(n > MAX_CURVE_POINTS)
    return out


def _json_split(sp: dict | None) -> dict | None:
    if sp is None:
        return None
    return {**sp, "roc_curve": _thin_curve(sp["roc_curve"]), "pr_curve": _thin_curve(sp["pr_curve"])}


# ----------------------------------------------------------------------------- the writer


def _npy_writer(arr: np.ndarray):
    return lambda f: np.save(f, arr, allow_pickle=False)


def write_evaluation(
    run_dir,
    *,
    val_scores,
    val_labels,
    test_scores=None,
    test_labels=None,
    history: list[dict] | None = None,
    config=None,
    threshold_method: str = "youden",
    threshold_value: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    test_split_name: str = "test",
    val_groups=None,
    test_groups=None,
    train_labels=None,
    gallery=None,
    force: bool = False,
) -> dict:
    """Choose the threshold on validation, score validation and test, and write the artifacts.

    Files written in ``run_dir``: ``metrics.json`` (everything below, nan/inf as null),
    ``val_scores.npy``, ``val_labels.npy``, ``test_scores.npy``, ``test_labels.npy`` (with a test
    split), ``loss_curve.png`` (with a history), ``roc.png``, ``pr.png``, ``confusion.png`` (test
    split, or validation without one), ``confusion_val.png`` (with a test split) and ``REPORT.md``.
    Artifacts an earlier call listed in its metrics.json that this call does not produce are
    removed; nothing else is ever deleted, and a same-named file we did not write is refused.

    Args:
        run_dir: folder to write into (created if missing).
        val_scores, val_labels: validation scores (higher = abnormal) and 0/1 labels, (n_val,).
        test_scores, test_labels: the same for the test split, (n_test,), or both None.
        history: per-epoch training dicts (see ``plots.plot_history``), or None.
        config: the run's configuration (dict or dataclass), copied into metrics.json.
        threshold_method, threshold_value: see ``thresholds.choose_threshold``.
        n_boot: bootstrap resamples for the AUC confidence intervals.
        seed: bootstrap seed (validation uses ``seed``, test ``seed + 1``).
        test_split_name: how the test split is named in the report (e.g. ``"test"``,
            ``"chexpert_valid"``); its files keep the ``test_`` prefix.
        val_groups, test_groups: the patient id of each image, or None; with them the AUC
            intervals resample patients (cluster bootstrap) where a patient has several images.
        train_labels: the training split's labels, for the data table (optional).
        gallery: None, or ``gallery(threshold) -> {"intro": str, "panels": [{"file", "title",
            "png"}]}`` drawing explanation maps of chosen images (``chexvision.explain.gallery``);
            its PNGs (``explain_tp.png``, ``explain_fp.png``, ``explain_fn.png``) go next to REPORT.md.
        force: replace same-named files that no earlier evaluation of ours wrote (else refused;
            see ``chexvision.outputs.claim_outputs``).

    Returns:
        the metrics.json content as a dict, except that nan/inf stay floats and the curves are
        the exact NumPy arrays (metrics.json thins each to <= ``MAX_CURVE_POINTS`` points): ``schema``,
        ``threshold`` ({value, method, method_value, chosen_on, rule}), ``val``, ``test``
        (None without a test split; each as ``split_metrics``), ``bootstrap``, ``training``,
        ``config``, ``files``, ``train_split`` (counts; only with ``train_labels``), ``warnings`` (lines, e.g. a
        validation split too small to choose a threshold reliably).

    Raises:
        UserError: a validation set with one class (the threshold is undefined), scores and
            labels that do not match or are not finite / binary, or a bad threshold method.
    """
    run_dir = Path(run_dir)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise UserError(f"n_boot must be a positive integer, got {n_boot!r}")
    vs, vy = _check_split("validation", val_scores, val_labels)
    n_pos = int(vy.sum())
    if n_pos == 0 or n_pos == vy.size:
        only = "abnormal (1)" if n_pos else "normal (0)"
        raise UserError(
            f"the validation split has only one class ({vy.size} images, all {only}); the decision threshold "
            "and validation AUC are undefined. Use a validation split holding both normal and abnormal images"
        )
    if (test_scores is None) != (test_labels is None):
        raise UserError("test_scores and test_labels must be given together")
    has_test = test_scores is not None
    if has_test:
        ts, ty = _check_split(test_split_name, test_scores, test_labels)

    try:
        threshold = choose_threshold(vy, vs, threshold_method, threshold_value)
    except ValueError as e:
        raise UserError(f"cannot choose the threshold: {e}") from e

    val = split_metrics(vs, vy, threshold, n_boot=n_boot, seed=seed, name="val", groups=val_groups)
    test = (split_metrics(ts, ty, threshold, n_boot=n_boot, seed=seed + 1, name=test_split_name, groups=test_groups)
            if has_test else None)
    unit = "patients" if any(sp and sp["bootstrap_unit"] == "patients" for sp in (val, test)) else "images"
    boot_method = ("percentile, patients resampled (cluster bootstrap: each drawn patient brings all their images)"
                   if unit == "patients" else "percentile, images resampled")
    warnings = [w for w in [small_validation_warning(val["n_positive"], val["n_negative"])] if w]
    train_split = None
    if train_labels is not None:
        tl = np.asarray(train_labels)
        n_pos = int((tl == 1).sum())
        train_split = {"n": int(tl.size), "n_positive": n_pos, "n_negative": int(tl.size) - n_pos,
                       "positive_rate": n_pos / tl.size if tl.size else math.nan}
    result = {
        "schema": SCHEMA,
        "threshold": {
            "value": threshold,
            "method": threshold_method,
            "method_value": threshold_value,
            "chosen_on": "val",
            "rule": THRESHOLD_RULE,
        },
        "val": val,
        "test": test,
        "bootstrap": {"n_boot": n_boot, "alpha": ALPHA, "seed": seed, "method": boot_method, "unit": unit},
        "warnings": warnings,
        "training": _training_summary(history) if history else None,
        "config": _jsonable(config),
    }
    if train_split is not None:
        result["train_split"] = train_split

    # Render everything in memory first: a failure here leaves run_dir untouched.
    splits = [val] + ([test] if test else [])
    shown = gallery(threshold) if gallery else None
    blobs: dict[str, object] = {
        "val_scores.npy": _npy_writer(np.asarray(val_scores)),
        "val_labels.npy": _npy_writer(vy),
    }
    if has_test:
        blobs["test_scores.npy"] = _npy_writer(np.asarray(test_scores))
        blobs["test_labels.npy"] = _npy_writer(ty)
    if history:
        cfg = result["config"] if isinstance(result["config"], dict) else {}
        run_name = (cfg.get("evaluated") or {}).get("run")
        track = (cfg.get("train") or {}).get("track")
        title = " · ".join(t for t in (run_name, f"{track} track" if track else None) if t)
        blobs["loss_curve.png"] = plots.plot_history(history, None, title=title or None)
    blobs["roc.png"] = plots.plot_roc(
        {sp["name"]: (sp["roc_curve"]["fpr"], sp["roc_curve"]["tpr"], sp["roc_auc"]) for sp in splits}, None
    )
    blobs["pr.png"] = plots.plot_pr(
        {
            sp["name"]: (
                sp["pr_curve"]["recall"],
                sp["pr_curve"]["precision"],
                sp["average_precision"],
                sp["positive_rate"],
            )
            for sp in splits
        },  # fmt: skip
        None,
    )
    headline = test if test else val
    blobs["confusion.png"] = plots.plot_confusion(
        headline["confusion_matrix"], None, title=f"{headline['name']} at threshold {threshold:.4g}"
    )
    if test:
        blobs["confusion_val.png"] = plots.plot_confusion(
            val["confusion_matrix"], None, title=f"val at threshold {threshold:.4g}"
        )
    if shown:
        blobs.update({panel["file"]: panel["png"] for panel in shown["panels"]})
        result["gallery"] = {"intro": shown["intro"],
                             "panels": [{k: v for k, v in panel.items() if k != "png"} for panel in shown["panels"]]}
    files = sorted([*blobs, "REPORT.md", "metrics.json"])
    result["files"] = files
    report_md = report_markdown(result, files, warnings)
    json_result = {**result, "val": _json_split(val), "test": _json_split(test)}
    metrics_text = json.dumps(_jsonable(json_result), indent=1, allow_nan=False) + "\n"

    write_artifacts(run_dir, files, blobs, report_md, metrics_text, force)
    return result


def write_artifacts(run_dir: Path, files: list[str], blobs: dict, report_md: str, metrics_text: str,
                    force: bool) -> None:
    """Write an evaluation's files into ``run_dir``, each atomically, metrics.json last.

    Before anything is written, ``outputs.claim_outputs`` refuses a same-named file that is not ours
    (unless ``force``) and names the files an earlier evaluation of ours listed but this one does not
    write: only those are removed, after the new files are in place (issue 10 §1).
    """
    from .outputs import claim_outputs

    stale = claim_outputs(run_dir, files, force)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        atomic_write(run_dir / name, blob if callable(blob) else (lambda f, b=blob: f.write(b)))
    for name in stale:
        (run_dir / name).unlink(missing_ok=True)
    atomic_write(run_dir / "REPORT.md", lambda f: f.write(report_md.encode("utf-8")))
    atomic_write(run_dir / "metrics.json", lambda f: f.write(metrics_text.encode("utf-8")))
