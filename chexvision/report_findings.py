"""Evaluation artifacts of ``--task findings``: per-finding metrics.json, scores, ROC grid, REPORT.md.

The twin of ``chexvision.report.write_evaluation`` for K outputs. Each finding's threshold is
chosen on validation (its unmasked rows) and applied unchanged to test; masked entries (−1) are
saved as −1 in ``val_/test_labels.npy`` and left out of that finding's metrics. Files are rendered
in memory first and written atomically, ``metrics.json`` last.

REPORT.md sets the test AUCs beside the per-finding test AUCs published by CheXNet (Rajpurkar et
al. 2017, Table 2; DenseNet-121 at 224×224 on their own random patient split of ChestX-ray14) and
by Wang et al. 2017 (as quoted in that table; ResNet-50 on the official split). Other splits,
resolutions and models: a reader's orientation, not a like-for-like comparison.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from . import plots
from .errors import UserError
from .metrics import UndefinedMetricWarning, roc_curve
from .metrics_multilabel import check_multilabel, choose_thresholds, multilabel_metrics
from .report import ALPHA, _jsonable, _npy_writer, _training_summary, write_artifacts

SCHEMA = "chexvision.metrics.findings/1"

# Rajpurkar et al. 2017 (arXiv:1711.05225v3), Table 2: test AUROC per pathology.
CHEXNET_AUC = {
    "Atelectasis": 0.8094, "Cardiomegaly": 0.9248, "Effusion": 0.8638, "Infiltration": 0.7345, "Mass": 0.8676,
    "Nodule": 0.7802, "Pneumonia": 0.7680, "Pneumothorax": 0.8887, "Consolidation": 0.7901, "Edema": 0.8878,
    "Emphysema": 0.9371, "Fibrosis": 0.8047, "Pleural_Thickening": 0.8062, "Hernia": 0.9164,
}
# Wang et al. 2017 (arXiv:1705.02315), as quoted in CheXNet's Table 2.
WANG2017_AUC = {
    "Atelectasis": 0.716, "Cardiomegaly": 0.807, "Effusion": 0.784, "Infiltration": 0.609, "Mass": 0.706,
    "Nodule": 0.671, "Pneumonia": 0.633, "Pneumothorax": 0.806, "Consolidation": 0.708, "Edema": 0.835,
    "Emphysema": 0.815, "Fibrosis": 0.769, "Pleural_Thickening": 0.708, "Hernia": 0.767,
}
PUBLISHED_NOTE = ("CheXNet: Rajpurkar et al. 2017, Table 2 (DenseNet-121, 224×224, their random patient split); "
                  "Wang et al. 2017 as quoted there (ResNet-50, official split). Other splits, resolutions and "
                  "models: for orientation only, not a like-for-like comparison.")


def plot_roc_grid(curves: dict, path=None, title: str = "ROC per finding") -> bytes:
    """One small ROC panel per finding. ``curves``: ``{finding: {split: (fpr, tpr, auc)}}``."""
    names = list(curves)
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig = plots._new_figure((2.6 * cols, 2.5 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8)
        drawn = 0
        for split, (fpr, tpr, auc) in curves[name].items():
            if fpr is not None:
                ax.plot(fpr, tpr, linewidth=1.2, label=f"{split} {auc:.3f}")
                drawn += 1
        ax.set_title(name, fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.tick_params(labelsize="x-small")
        if drawn:
            ax.legend(loc="lower right", fontsize="x-small")
        else:  # one class in every split: no curve to draw
            ax.text(0.5, 0.5, "AUC undefined\n(one class)", ha="center", va="center", fontsize="small")
    for ax in axes[len(names):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return plots._finish(fig, path)


def _curve(y: np.ndarray, s: np.ndarray, j: int, auc: float):
    keep = y[:, j] >= 0
    if math.isnan(auc):
        return None, None, auc
    fpr, tpr, _ = roc_curve(y[keep, j], s[keep, j])
    return fpr, tpr, auc


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _report_markdown(result: dict, names: list[str]) -> str:
    head = result["test"] or result["val"]
    which = "test" if result["test"] else "val"
    lines = [f"# CheXVision findings report ({len(names)} findings)", "",
             f"Task `findings`; thresholds chosen per finding on validation ({result['threshold']['method']}), "
             f"applied unchanged to {which}. Masked entries (uncertain under U-Ignore, unknown) are left out of "
             f"each finding's numbers. AUC CI: 95% percentile bootstrap, {result['bootstrap']['method'].split(', ')[1]}.",
             ""]
    macro = head["macro_auc"]
    lines.append(f"**Macro mean {which} ROC-AUC: {_fmt(macro)}** over {len(head['auc_defined'])} findings with a "
                 "defined AUC" + (f"; undefined (one class in the split): {', '.join(head['auc_undefined'])}"
                                  if head["auc_undefined"] else "") + ".")
    lines.append("")
    published = any(n in CHEXNET_AUC for n in names)
    cols = ["finding", f"{which} AUC", "95% CI", "AP", "prevalence", "threshold", "sensitivity", "specificity",
            "val AUC"]
    if published:
        cols += ["CheXNet AUC†", "Wang 2017 AUC†"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for n in names:
        o, v = head["outputs"][n], result["val"]["outputs"][n]
        lo, hi = o["roc_auc_ci"]
        row = [n, _fmt(o["roc_auc"]), f"{_fmt(lo)}–{_fmt(hi)}", _fmt(o["average_precision"]),
               f"{_fmt(o['prevalence'])} ({o['n_positive']}/{o['n']})", _fmt(o["threshold"], 4),
               _fmt(o.get("sensitivity")), _fmt(o.get("specificity")), _fmt(v["roc_auc"])]
        if published:
            row += [_fmt(CHEXNET_AUC.get(n)), _fmt(WANG2017_AUC.get(n))]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if published:
        lines += [f"† {PUBLISHED_NOTE}", ""]
    prev = result["prevalence"]
    lines += ["Prevalence per split (positives / unmasked images):", "",
              "| finding | " + " | ".join(prev) + " |", "|---|" + "---|" * len(prev)]
    lines += ["| " + n + " | " + " | ".join(f"{_fmt(p[n]['prevalence'])} ({p[n]['n_positive']}/{p[n]['n']})"
                                            for p in prev.values()) + " |" for n in names]
    lines.append("")
    masked = {n: head["outputs"][n]["n_masked"] for n in names if head["outputs"][n]["n_masked"]}
    if masked:
        lines += ["Masked entries per finding (" + which + "): "
                  + ", ".join(f"{n} {k}" for n, k in masked.items()), ""]
    if result["threshold"]["fallback"]:
        lines += ["Threshold 0.5 (the rule is undefined with one class in validation) for: "
                  + ", ".join(result["threshold"]["fallback"]), ""]
    lines += ["![ROC per finding](roc_grid.png)", ""]
    if "loss_curve.png" in result["files"]:
        lines += ["![loss](loss_curve.png)", ""]
    lines += ["Files: " + ", ".join(result["files"]), ""]
    return "\n".join(lines)


def split_prevalence(labels, names) -> dict:
    """{finding: {"n", "n_positive", "n_masked", "prevalence"}} of one split's (N, K) labels (−1 masked)."""
    y = np.asarray(labels).reshape(len(labels), len(names))
    out = {}
    for j, n in enumerate(names):
        known = y[:, j] >= 0
        pos = int((y[:, j] == 1).sum())
        out[n] = {"n": int(known.sum()), "n_positive": pos, "n_masked": int((~known).sum()),
                  "prevalence": pos / int(known.sum()) if known.any() else math.nan}
    return out


def write_findings_evaluation(run_dir, *, names, val_scores, val_labels, test_scores=None, test_labels=None,
                              history=None, config=None, threshold_method: str = "youden",
                              threshold_value=None, n_boot: int = 1000, seed: int = 0,
                              train_labels=None, val_groups=None, test_groups=None, force: bool = False) -> dict:
    """Per-finding thresholds on validation, metrics of validation and test, artifacts written.

    Args:
        names: the K finding names (the task's outputs), in column order.
        val_scores, val_labels: (n_val, K) probabilities and labels 1 / 0 / −1 (masked).
        test_scores, test_labels: the same for test, or both None.
        train_labels: the training split's (n_train, K) labels, for the prevalence table (optional).
        val_groups, test_groups: patient ids of the rows: the AUC intervals then resample patients
            (when ``chexvision.bootstrap`` offers the cluster bootstrap), else images.

    Returns:
        the metrics.json content (nan kept as float): ``schema``, ``task``, ``threshold``
        ({method, method_value, chosen_on, values: {finding: t}, fallback}), ``val`` and ``test``
        (``multilabel_metrics``: ``outputs`` keyed by finding, ``macro_auc``, ``auc_undefined``),
        ``bootstrap``, ``training``, ``config``, ``files``.
    """
    run_dir = Path(run_dir)
    names = list(names)
    try:
        vy, vs = check_multilabel(val_labels, val_scores)
        ty, ts = check_multilabel(test_labels, test_scores) if test_scores is not None else (None, None)
    except ValueError as e:
        raise UserError(f"findings evaluation: {e}") from e
    if vy.shape[1] != len(names):
        raise UserError(f"findings evaluation: {vy.shape[1]} score columns for {len(names)} findings")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        try:
            thr, fallback = choose_thresholds(vy, vs, threshold_method, threshold_value, names)
        except ValueError as e:
            raise UserError(f"cannot choose the thresholds: {e}") from e
        val = multilabel_metrics(vy, vs, thr, names, n_boot=n_boot, seed=seed, groups=val_groups)
        test = (multilabel_metrics(ty, ts, thr, names, n_boot=n_boot, seed=seed + 1000, groups=test_groups)
                if ty is not None else None)
    notes = sorted({str(w.message) for w in caught if "bootstrap" not in str(w.message)})
    result = {
        "schema": SCHEMA, "task": {"name": "findings", "outputs": names},
        "threshold": {"method": threshold_method, "method_value": threshold_value, "chosen_on": "val",
                      "values": dict(zip(names, thr.tolist())), "fallback": fallback,
                      "rule": "predict the finding when its probability >= its threshold"},
        "val": val, "test": test, "undefined": notes,
        "prevalence": {sp: split_prevalence(lab, names) for sp, lab in
                       (("train", train_labels), ("val", vy), ("test", ty)) if lab is not None},
        "bootstrap": {"n_boot": n_boot, "alpha": ALPHA, "seed": seed, "method": "percentile, " + (
            "patients resampled (cluster bootstrap)" if val_groups is not None
            else "images resampled")},
        "published": {"chexnet_test_auc": CHEXNET_AUC, "wang2017_test_auc": WANG2017_AUC, "note": PUBLISHED_NOTE},
        "training": _training_summary(history) if history else None,
        "config": _jsonable(config),
    }
    blobs = {"val_scores.npy": _npy_writer(vs), "val_labels.npy": _npy_writer(vy)}
    if ty is not None:
        blobs["test_scores.npy"], blobs["test_labels.npy"] = _npy_writer(ts), _npy_writer(ty)
    if history:
        blobs["loss_curve.png"] = plots.plot_history(history, None)
    curves = {}
    for j, n in enumerate(names):
        curves[n] = {"val": _curve(vy, vs, j, val["outputs"][n]["roc_auc"])}
        if test is not None:
            curves[n]["test"] = _curve(ty, ts, j, test["outputs"][n]["roc_auc"])
    blobs["roc_grid.png"] = plot_roc_grid(curves)
    files = sorted([*blobs, "REPORT.md", "metrics.json"])
    result["files"] = files
    report_md = _report_markdown(result, names)
    metrics_text = json.dumps(_jsonable(result), indent=1, allow_nan=False) + "\n"
    write_artifacts(run_dir, files, blobs, report_md, metrics_text, force)  # never replaces what is not ours
    return result
