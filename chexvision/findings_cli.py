"""The ``--task findings`` ends of ``evaluate`` and ``predict``: K probabilities, K thresholds.

Kept apart from the binary commands so that ``evaluate.py`` and ``predict.py`` only hand over to
it (one line each); the binary path is unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import validate
from .errors import UserError
from .tasks import Task


def evaluate_findings(out, ds, checkpoint, track, threshold, method, value, n_boot, history, config,
                      val_scores, val_labels, test_scores, test_labels, force: bool = False) -> int:
    from .report_findings import write_findings_evaluation

    names = list(ds.task.outputs)
    result = write_findings_evaluation(out, names=names, val_scores=val_scores, val_labels=val_labels,
                                       test_scores=test_scores, test_labels=test_labels, history=history,
                                       config=config, threshold_method=method, threshold_value=value,
                                       n_boot=n_boot, seed=checkpoint.train.get("seed", 0),
                                       train_labels=ds.targets[ds.indices("train")],
                                       val_groups=ds.patients[ds.indices("val")],
                                       test_groups=ds.patients[ds.indices("test")] if test_scores is not None else None,
                                       force=force)
    print(f"chexvision evaluate: {checkpoint.dir} (epoch {checkpoint.meta.get('epoch')}) with the {track} track; "
          f"{len(names)} findings, thresholds per finding ({threshold} on validation)")
    head_name = "test" if result["test"] else "val"
    head = result[head_name]
    width = max(len(n) for n in names)
    print(f"  {'finding':<{width}}  {head_name} AUC  prevalence  threshold  sensitivity  specificity")
    fmt = lambda v: "  nan" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    for n in names:
        o = head["outputs"][n]
        print(f"  {n:<{width}}  {fmt(o['roc_auc']):>8}  {fmt(o['prevalence']):>10}  {o['threshold']:>9.4g}  "
              f"{fmt(o.get('sensitivity')):>11}  {fmt(o.get('specificity')):>11}")
    print(f"  macro mean {head_name} AUC {fmt(head['macro_auc'])} over {len(head['auc_defined'])} findings"
          + (f" (undefined: {', '.join(head['auc_undefined'])})" if head["auc_undefined"] else ""))
    print(f"  wrote {Path(out) / 'metrics.json'} and {Path(out) / 'REPORT.md'}")
    return 0


def task_of(checkpoint: ckpt.Checkpoint) -> Task:
    """The checkpoint's task (a config written before tasks existed is binary), checked against the model."""
    task = Task.from_dict(checkpoint.config.get("task"))
    k = checkpoint.model_spec.get("out_features")
    if k != task.n_outputs:
        raise UserError(f"{checkpoint.dir / ckpt.CONFIG_FILE}: the task has {task.n_outputs} output(s) "
                        f"({', '.join(task.outputs)}) but the model {k}")
    return task


def saved_thresholds(checkpoint: ckpt.Checkpoint, task: Task) -> tuple[np.ndarray, str]:
    """Per-finding thresholds: this checkpoint's metrics.json (evaluate), else meta.json (training)."""
    metrics_path = checkpoint.run_dir / "metrics.json"
    if metrics_path.is_file():
        try:
            m = json.loads(metrics_path.read_text(encoding="utf-8"))
            ev = (m.get("config") or {}).get("evaluated") or {}
            same = (Path(str(ev.get("checkpoint", ""))).name == checkpoint.dir.name
                    and ev.get("epoch") == checkpoint.meta.get("epoch"))
            values = m["threshold"]["values"]
            if same and all(values.get(n) is not None for n in task.outputs):
                return (np.array([validate.check_threshold(values[n], str(metrics_path)) for n in task.outputs]),
                        f"{metrics_path} ({m['threshold'].get('method')} on validation, per finding)")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    thr = (checkpoint.meta.get("threshold") or {}).get("value")
    if not isinstance(thr, list) or len(thr) != task.n_outputs or any(t is None for t in thr):
        raise UserError(f"{checkpoint.dir / ckpt.META_FILE}: no per-finding thresholds stored; pass --threshold")
    thr = [validate.check_threshold(t, str(checkpoint.dir / ckpt.META_FILE)) for t in thr]
    return np.array(thr, dtype=np.float64), f"{checkpoint.dir / ckpt.META_FILE} (on validation at training)"


def predict_findings(args, checkpoint, task: Task, good: list[Path], probs: np.ndarray) -> tuple[list[dict], int]:
    """Rows of K probabilities and flags; prints the table (or JSON) and writes --out.

    Returns the rows and the number of images left out because a score was not finite (each
    named on stderr: no NaN reaches an answer)."""
    if args.threshold is not None:
        thr, source = np.full(task.n_outputs, float(args.threshold)), "--threshold"
    else:
        thr, source = saved_thresholds(checkpoint, task)
    probs = np.asarray(probs).reshape(len(good), task.n_outputs)
    rows, bad = [], 0
    for path, p in zip(good, probs):
        if not np.isfinite(p).all():
            print(f"chexvision predict: error: {path}: the model's scores are not finite numbers", file=sys.stderr)
            bad += 1
            continue
        flagged = [n for n, q, t in zip(task.outputs, p, thr) if q >= t]
        rows.append({"path": str(path), "probabilities": dict(zip(task.outputs, map(float, p))),
                     "flags": {n: int(q >= t) for n, q, t in zip(task.outputs, p, thr)},
                     "findings": flagged, "thresholds": dict(zip(task.outputs, map(float, thr)))})
    if args.out:
        from numpy_nn.serialization import atomic_write

        text = json.dumps(rows, indent=2, allow_nan=False) + "\n" if args.out.lower().endswith(".json") else _csv(rows, task)
        atomic_write(args.out, lambda f: f.write(text.encode("utf-8")))
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, allow_nan=False) + "\n")
        return rows, bad
    width = max([len(n) for n in task.outputs] + [7])
    for r in rows:
        print(f"{r['path']}: " + (", ".join(r["findings"]) if r["findings"] else "no finding flagged"))
        for n in task.outputs:
            mark = "*" if r["flags"][n] else " "
            print(f"  {n:<{width}}  {r['probabilities'][n]:.4f} {mark} (threshold {r['thresholds'][n]:.4g})")
    if rows:
        print(f"* = flagged (probability >= the finding's threshold); thresholds from {source}")
    return rows, bad


def _csv(rows: list[dict], task: Task) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", *[f"p_{n}" for n in task.outputs], *[f"flag_{n}" for n in task.outputs]])
    for r in rows:
        w.writerow([r["path"], *[f"{r['probabilities'][n]:.6g}" for n in task.outputs],
                    *[r["flags"][n] for n in task.outputs]])
    return buf.getvalue()
