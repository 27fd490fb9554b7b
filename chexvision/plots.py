"""Evaluation and training plots as PNG files: loss curves, ROC, precision-recall, confusion matrix.

Matplotlib is imported inside each function and only its object-oriented API is used
(``matplotlib.figure.Figure`` drawn by the Agg canvas): no pyplot, no global backend switch, no
window, safe on a headless machine and inside tests. Each ``plot_*`` returns the PNG bytes and,
when ``path`` is given, writes them atomically (``numpy_nn.serialization.atomic_write``).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

from numpy_nn.serialization import atomic_write

CLASS_NAMES = ("normal", "abnormal")


def _new_figure(figsize=(6.0, 4.5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return data


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of the entries that have a finite ``key``; epoch defaults to position + 1."""
    xs, ys = [], []
    for i, row in enumerate(history):
        v = row.get(key)
        if v is None:
            continue
        v = float(v)
        if math.isfinite(v):
            xs.append(float(row.get("epoch", i + 1)))
            ys.append(v)
    return np.asarray(xs), np.asarray(ys)


def plot_history(history: list[dict], path: str | os.PathLike | None, title: str | None = None) -> bytes:
    """Training curves per epoch: losses on the left axis, validation AUC / accuracy on the right,
    the learning rate in a panel below when present, and the legend outside the data (right).

    The train total loss (data + regularisation) is drawn only where it differs from the data
    loss (an L1/L2 penalty is on); otherwise one line says "train loss (data = total, no L1/L2)".
    Each series has its own colour, line style and marker, so overlapping lines stay visible.

    Args:
        history: one dict per epoch with any of ``epoch, train_loss`` (data + regularisation),
            ``train_data_loss, train_reg_loss, val_loss, val_auc, val_accuracy, lr``; missing,
            None or non-finite entries are skipped.
        path: PNG file to write, or None to only return the bytes.
        title: e.g. the run name and track; "Training history" is prepended.
    """
    has_lr = _series(history, "lr")[0].size > 0
    fig = _new_figure((8.5, 6.0) if has_lr else (8.5, 4.5))
    if has_lr:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        ax, ax_lr = fig.subplots(1, 1), None

    xd, yd = _series(history, "train_data_loss")
    xt, yt = _series(history, "train_loss")
    same = xd.size == 0 or (xd.size == xt.size and np.allclose(yd, yt, rtol=1e-9, atol=0))
    losses = [("train_loss", "train loss (data = total, no L1/L2)", "tab:blue", "-", "o")] if same else [
        ("train_data_loss", "train data loss", "tab:blue", "-", "o"),
        ("train_loss", "train total loss (+ L1/L2)", "tab:cyan", "--", "^"),
    ]
    losses.append(("val_loss", "val loss", "tab:orange", "-", "D"))
    handles = []
    for key, label, color, style, marker in losses:
        x, y = _series(history, key)
        if x.size:
            handles += ax.plot(x, y, style, color=color, marker=marker, markersize=4, label=label)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)

    ax2 = ax.twinx()
    for key, label, color, marker in [("val_auc", "val ROC-AUC", "tab:red", "s"),
                                      ("val_accuracy", "val accuracy", "tab:purple", "v")]:
        x, y = _series(history, key)
        if x.size:
            handles += ax2.plot(x, y, ":", color=color, marker=marker, markersize=4, label=label)
    ax2.set_ylabel("validation AUC / accuracy")
    if handles:  # outside the axes, so it never covers a point
        fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    ax.set_title("Training history" + (f": {title}" if title else ""))

    if ax_lr is not None:
        x, y = _series(history, "lr")
        ax_lr.plot(x, y, color="tab:gray", marker=".")
        if (y > 0).all():
            ax_lr.set_yscale("log")
        ax_lr.set_ylabel("lr")
        ax_lr.grid(alpha=0.3)
        ax_lr.set_xlabel("epoch")
    else:
        ax.set_xlabel("epoch")
    return _finish(fig, path)


def plot_roc(curves: dict, path: str | os.PathLike | None, title: str = "ROC curve") -> bytes:
    """ROC curves of several splits or models on one plot, with the chance diagonal.

    Args:
        curves: ``{name: (fpr, tpr, auc)}``; ``auc`` appears in the legend (nan allowed).
        path: PNG file to write, or None to only return the bytes.
    """
    fig = _new_figure((5.5, 5.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_pr(curves: dict, path: str | os.PathLike | None, title: str = "Precision-recall curve") -> bytes:
    """Precision-recall curves as steps (the shape average precision integrates).

    Args:
        curves: ``{name: (recall, precision, average_precision)}`` or, to draw the prevalence
            baseline, ``{name: (recall, precision, average_precision, prevalence)}``.
        path: PNG file to write, or None to only return the bytes.
    """
    fig = _new_figure((5.5, 5.0))
    ax = fig.subplots()
    for name, curve in curves.items():
        rec, prec, ap = curve[:3]
        (line,) = ax.step(rec, prec, where="post", linewidth=1.5, label=f"{name} (AP {ap:.3f})")
        if len(curve) > 3:
            ax.axhline(curve[3], color=line.get_color(), linestyle=":", linewidth=1, label=f"{name} prevalence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_confusion(
    cm, path: str | os.PathLike | None, title: str = "Confusion matrix", class_names=CLASS_NAMES
) -> bytes:
    """A 2×2 confusion matrix ``[[tn, fp], [fn, tp]]`` with counts and row percentages.

    Args:
        cm: (2, 2) counts, rows = true class, columns = predicted class.
        path: PNG file to write, or None to only return the bytes.
        title: plot title (say which split and threshold).
    """
    cm = np.asarray(cm)
    if cm.shape != (2, 2):
        raise ValueError(f"confusion matrix must be (2, 2), got shape {cm.shape}")
    row_totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row_totals, out=np.zeros(cm.shape), where=row_totals > 0)
    fig = _new_figure((4.8, 4.2))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="fraction of true class")
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{100 * frac[i, j]:.1f}%",
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], [f"pred {c}" for c in class_names])
    ax.set_yticks([0, 1], [f"true {c}" for c in class_names])
    ax.set_title(title)
    return _finish(fig, path)
