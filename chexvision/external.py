"""``python -m chexvision evaluate --dataset D --data-dir DIR``: external validation.

A run trained on one source is scored on a whole other data set, as a clinician would test it on
another hospital's films: every image of the external data is test data (no patient split, no
training, no validation), the pixels are standardised with the *training* statistics saved in the
checkpoint, and the decision threshold is the checkpoint's saved one (the run's ``metrics.json``
when ``evaluate`` chose it on validation, else the one stored at training). Nothing is re-chosen
on the external data, so its numbers are an honest estimate of how the frozen model transfers.

Output folder: ``--out``, default ``RUN/external-<dataset>/``. It holds ``metrics.json``,
``REPORT.md``, ``scores.csv`` (path, label, score, prediction per image), ``external_scores.npy``,
``external_labels.npy``, ``roc.png``, ``pr.png`` and ``confusion.png``. A folder that already
holds anything else, or another command's report, is refused: nothing that is not ours is
overwritten. The preprocessing cache goes where ``--cache`` says (default ``./cache/...``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from numpy_nn.serialization import atomic_write

from . import checkpoint as ckpt
from . import plots
from .errors import UserError

SCHEMA = "chexvision.external/1"
SPLIT_NAME = "external"
ARTIFACTS = ("metrics.json", "REPORT.md", "scores.csv", "external_scores.npy", "external_labels.npy",
             "roc.png", "pr.png", "confusion.png")


def default_out(checkpoint: ckpt.Checkpoint, dataset: str) -> Path:
    return checkpoint.run_dir / f"external-{dataset}"


def check_out(out: Path) -> None:
    """UserError unless ``out`` is new, empty, or an earlier external evaluation (ours alone)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    foreign = [e for e in entries if e not in ARTIFACTS and not e.startswith(".")]
    ours = False
    try:
        ours = json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        pass
    if foreign or not ours:
        what = f"files evaluate --dataset did not write ({', '.join(foreign[:3])})" if foreign else \
            "another report (its metrics.json is not an external evaluation)"
        raise UserError(f"--out {out}: holds {what}; choose a new or empty folder")


def external_data_config(checkpoint: ckpt.Checkpoint, dataset: str, data_dir: str, cache: str | None) -> dict:
    """The data config of the external set: the run's image size, everything else the data defaults."""
    from .data import data_config

    saved = checkpoint.data
    return data_config(SimpleNamespace(dataset=dataset, data_dir=data_dir, cache=cache,
                                       image_size=int(saved.get("image_size", 64)), seed=int(saved.get("seed", 0))))


def _internal_summary(checkpoint: ckpt.Checkpoint) -> dict | None:
    """The run's own test figures from its metrics.json, when they belong to this checkpoint."""
    path = checkpoint.run_dir / "metrics.json"
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        ev = (m.get("config") or {}).get("evaluated") or {}
        if Path(str(ev.get("checkpoint", ""))).name != checkpoint.dir.name or ev.get("epoch") != checkpoint.meta.get("epoch"):
            return None
        out = {}
        for name in ("val", "test"):
            sp = m.get(name) or {}
            if sp.get("roc_auc") is not None:
                out[name] = {k: sp.get(k) for k in ("n", "roc_auc", "roc_auc_ci95", "balanced_accuracy", "recall",
                                                    "specificity", "average_precision", "accuracy", "tn", "fp",
                                                    "fn", "tp")}
        return out or None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _scores_csv(paths, labels, scores, threshold: float) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "p_abnormal", "prediction"])
    for p, y, s in zip(paths, labels, scores):
        w.writerow([p, int(y), f"{float(s):.6g}", "abnormal" if s >= threshold else "normal"])
    return buf.getvalue().encode("utf-8")


def _report(result: dict) -> str:
    from .report import _fmt

    ex, info, thr = result[SPLIT_NAME], result["about"], result["threshold"]
    lines = [
        "# CheXVision external evaluation", "",
        f"This is an **external evaluation**: the frozen run `{info['run']}` (checkpoint `{info['checkpoint']}`, "
        f"epoch {info['epoch']}, {info['model']} trained with the {info['trained_with']} track on "
        f"`{info['trained_on']}`) scored with the {info['track']} track on **every image** of the `{info['dataset']}` "
        f"data set in `{info['data_dir']}`. Nothing was trained, split or chosen on these images: the pixels are "
        "standardised with the training statistics and the decision threshold is the run's saved one.", "",
        "## Data", "",
        f"- {ex['n']:,} images of {info['patients']:,} patients; {ex['n_positive']:,} abnormal, "
        f"{ex['n_negative']:,} normal (abnormal rate {_fmt(ex['positive_rate'])}).",
        f"- decision threshold **{thr['value']:.6g}** from {thr['source']}; rule: predict abnormal when score >= "
        "threshold.",
    ]
    lines += [f"- {n}" for n in info["notes"]]
    internal = (result.get("internal") or {}).get("test")

    def ci_text(sp):
        lo, hi = sp.get("roc_auc_ci95") or (None, None)
        return f"{_fmt(sp.get('roc_auc'))} ({_fmt(lo)}–{_fmt(hi)})"

    rows = [("ROC-AUC (95% bootstrap CI)", ci_text)]
    rows += [(label, lambda sp, k=key: _fmt(sp.get(k))) for label, key in (
        ("average precision", "average_precision"), ("balanced accuracy", "balanced_accuracy"),
        ("recall (sensitivity)", "recall"), ("specificity", "specificity"), ("accuracy", "accuracy"))]
    rows.append(("TN / FP / FN / TP", lambda sp: " / ".join(_fmt(sp.get(k)) for k in ("tn", "fp", "fn", "tp"))
                 if "tn" in sp else "-"))
    head = "| metric | external |" + (" the run's own test split |" if internal else "")
    lines += ["", "## Results", "", head, "|---|---:|" + ("---:|" if internal else "")]
    for label, fn in rows:
        lines.append(f"| {label} | {fn(ex)} |" + (f" {fn(internal)} |" if internal else ""))
    lines += ["", "## Figures", "", "![roc.png](roc.png)", "![pr.png](pr.png)", "![confusion.png](confusion.png)", "",
              "## Caveats", "",
              "- A threshold chosen on the training source's validation split may sit at another operating point "
              "on a source with another prevalence, scanner or labelling; sensitivity and specificity above show "
              "where it landed. Re-choose it on local validation data before any use.",
              "- The bootstrap resamples images, not patients; with several images per patient the interval is "
              "somewhat too narrow.",
              "- Research and teaching only; not a medical device.", ""]
    return "\n".join(lines)


def run_external(args) -> int:
    """``evaluate --dataset D --data-dir DIR``: see the module docstring."""
    from .data import open_dataset
    from .evaluate import load_engine, load_standardizer, score_split
    from .predict import saved_threshold
    from .report import _json_split, _jsonable, split_metrics
    from .tracks import layout

    if args.threshold is not None:
        raise UserError("--threshold cannot be used with --dataset: an external evaluation keeps the run's saved "
                        "threshold (choosing one on the external data would make its numbers optimistic)")
    if args.split != "test":
        raise UserError("--split applies to the run's own data; with --dataset every external image is test")
    if args.dataset != "synthetic" and not args.eval_data_dir:
        raise UserError(f"--dataset {args.dataset} needs --data-dir (the external data set's folder)")
    checkpoint = ckpt.load_checkpoint(args.checkpoint)
    if (checkpoint.config.get("task") or {}).get("name", "binary") != "binary":
        raise UserError(f"--checkpoint {args.checkpoint}: external validation scores binary (normal vs abnormal) runs; "
                        "this run is --task findings (evaluate it without --dataset)")
    out = Path(args.out) if args.out else default_out(checkpoint, args.dataset)
    check_out(out)
    threshold, source = saved_threshold(checkpoint)
    train = checkpoint.train
    track = args.track or train["track"]
    engine = load_engine(checkpoint, track, args.device)
    standardizer = load_standardizer(checkpoint)
    cfg = external_data_config(checkpoint, args.dataset, args.eval_data_dir, args.eval_cache)
    ds = open_dataset(cfg, progress=not args.no_progress and sys.stderr.isatty(), check_splits=False)
    idx = np.arange(len(ds), dtype=np.int64)
    scores, labels = score_split(engine, ds, idx, standardizer, layout(checkpoint.model_spec), train["dtype"])
    if labels.min() == labels.max():
        raise UserError(f"the external data set holds only {'abnormal' if labels[0] else 'normal'} images "
                        f"({labels.size:,}); ROC-AUC needs both classes")
    ex = split_metrics(scores, labels, threshold, n_boot=args.n_boot, seed=train.get("seed", 0), name=SPLIT_NAME)
    trained_on = checkpoint.data.get("data_dir") or checkpoint.data.get("dataset")
    notes = [n for n in ds.notes if "split" not in n]  # the external set is not split
    if cfg.get("data_dir") and cfg.get("data_dir") == checkpoint.data.get("data_dir"):
        notes.append("WARNING: this is the folder the run was trained on, so these are not external figures")
    result = {
        "schema": SCHEMA,
        "threshold": {"value": threshold, "source": source, "chosen_on": "the run's validation split"},
        SPLIT_NAME: ex,
        "about": {"run": str(checkpoint.run_dir), "checkpoint": str(checkpoint.dir),
                     "epoch": checkpoint.meta.get("epoch"), "model": train.get("model"),
                     "trained_with": train.get("track"), "trained_on": str(trained_on), "track": track,
                     "dataset": args.dataset, "data_dir": cfg.get("data_dir"), "cache": cfg.get("cache"),
                     "image_size": ds.image_size, "patients": int(len(np.unique(ds.patients))), "notes": notes},
        "internal": _internal_summary(checkpoint),
        "bootstrap": {"n_boot": args.n_boot, "seed": train.get("seed", 0), "method": "percentile, images resampled"},
        "config": {"train": train, "data": checkpoint.data, "external_data": cfg},
    }
    blobs = {
        "external_scores.npy": lambda f: np.save(f, np.asarray(scores), allow_pickle=False),
        "external_labels.npy": lambda f: np.save(f, labels, allow_pickle=False),
        "scores.csv": _scores_csv(ds.paths, labels, scores, threshold),
        "roc.png": plots.plot_roc({SPLIT_NAME: (ex["roc_curve"]["fpr"], ex["roc_curve"]["tpr"], ex["roc_auc"])}, None,
                                  title=f"ROC curve, external: {args.dataset}"),
        "pr.png": plots.plot_pr({SPLIT_NAME: (ex["pr_curve"]["recall"], ex["pr_curve"]["precision"],
                                              ex["average_precision"], ex["positive_rate"])}, None,
                                title=f"Precision-recall, external: {args.dataset}"),
        "confusion.png": plots.plot_confusion(ex["confusion_matrix"], None,
                                              title=f"external at threshold {threshold:.4g}"),
        "REPORT.md": _report(result).encode("utf-8"),
    }
    metrics_text = json.dumps(_jsonable({**result, SPLIT_NAME: _json_split(ex)}), indent=1, allow_nan=False) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        atomic_write(out / name, blob if callable(blob) else (lambda f, b=blob: f.write(b)))
    atomic_write(out / "metrics.json", lambda f: f.write(metrics_text.encode("utf-8")))

    print(f"chexvision evaluate: external evaluation of {checkpoint.dir} (epoch {checkpoint.meta.get('epoch')}) "
          f"with the {track} track on {args.dataset} {cfg.get('data_dir') or ''}".rstrip())
    print(f"  threshold {threshold:.4g} from {source} (not re-chosen)")
    print(f"  external n={ex['n']:<6} ROC-AUC {ex['roc_auc']:.4f} ({ex['roc_auc_ci95'][0]:.3f}-"
          f"{ex['roc_auc_ci95'][1]:.3f})  balanced {ex['balanced_accuracy']:.3f}  sensitivity {ex['recall']:.3f}  "
          f"specificity {ex['specificity']:.3f}")
    print(f"  wrote {out / 'metrics.json'} and {out / 'REPORT.md'}")
    return 0
