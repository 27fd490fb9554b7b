"""The plots of ``python -m chexvision compare``: per-layer divergence, both losses, step times.

Each takes the ``result`` dict that ``chexvision.compare.lockstep`` returns (what compare.json holds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


# -- plots -----------------------------------------------------------------------------------------------
def _figure(figsize=(7.0, 4.5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    import io

    from numpy_nn.serialization import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def _title(c: dict) -> str:
    return f"{c['model']} {c['dtype']}, {c['optimizer']} lr={c['lr']:g}"


def layers_of(result: dict) -> dict[str, np.ndarray]:
    """Per layer (a tensor's name up to its last dot), the max over its tensors at each step."""
    out: dict[str, np.ndarray] = {}
    for name in result["tensors"]:
        layer = name.rsplit(".", 1)[0]
        y = np.asarray(result["max_abs"][name], dtype=float)
        out[layer] = np.maximum(out[layer], y) if layer in out else y
    return out


def plot_divergence(result: dict, path: Path) -> None:
    """Per-layer max |numpy − torch| against the step, log scale; exact agreement drawn at a floor."""
    c = result["config"]
    layers = layers_of(result)
    fig = _figure((8.0, 4.5))
    ax = fig.add_subplot()
    positive = [v for y in layers.values() for v in y if v > 0]
    floor = min(positive) / 10 if positive else 1e-20
    for i, (layer, y) in enumerate(layers.items()):
        steps = np.arange(len(y))
        ax.plot(steps, np.where(y > 0, y, floor), lw=1.2, ls=("-", "--", ":")[i // 10 % 3], label=layer)
    ax.axhline(c["tolerance"], color="red", ls="--", lw=1, label=f"tolerance {c['tolerance']:g}")
    ax.axhline(floor, color="gray", ls=":", lw=0.8)
    ax.text(0.99, floor, "bit-identical", transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=7,
            color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("step (0 = before the first update)")
    ax.set_ylabel("max |numpy − torch| over the layer's tensors")
    ax.set_title(f"Lockstep divergence per layer ({_title(c)})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def plot_losses(result: dict, path: Path) -> None:
    """Both tracks' training loss per step, overlaid, and their difference on a log scale below."""
    c = result["config"]
    fig = _figure((7.0, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    ln, lt = np.asarray(result["loss"]["numpy"]), np.asarray(result["loss"]["torch"])
    steps = np.arange(1, len(ln) + 1)
    top.plot(steps, ln, lw=1.5, label="numpy_nn")
    top.plot(steps, lt, lw=1.2, ls="--", label="torch_ref")
    top.set_ylabel("training loss")
    top.set_title(f"Both tracks' losses ({_title(c)})", fontsize=10)
    top.legend()
    d = np.abs(ln - lt)
    bottom.plot(steps, np.where(d > 0, d, np.nan), lw=1, color="black")
    if np.any(d > 0):
        bottom.set_yscale("log")
    bottom.set_ylabel("|difference|")
    bottom.set_xlabel("step")
    _save(fig, path)


def plot_timing(result: dict, path: Path) -> None:
    """Median seconds per step for each track (first step left out), with the quartiles."""
    c, v = result["config"], result["verdict"]
    fig = _figure((5.0, 4.0))
    ax = fig.add_subplot()
    names = ["numpy", "torch"]
    med, lo, hi = [], [], []
    for n in names:
        s = np.asarray(result["seconds"][n][1:] or result["seconds"][n]) * 1e3
        q1, q2, q3 = np.percentile(s, [25, 50, 75])
        med.append(q2)
        lo.append(q2 - q1)
        hi.append(q3 - q2)
    ax.bar(["numpy_nn", f"torch_ref ({c['device']})"], med, yerr=[lo, hi], capsize=6, color=["tab:blue", "tab:orange"])
    ratio = v["time_ratio_numpy_over_torch"]
    ax.set_ylabel("ms per step (median, quartiles)")
    ax.set_title(f"Step time, {_title(c)}\nnumpy/torch = {ratio:.2f}x" if ratio is not None else "Step time",
                 fontsize=10)
    _save(fig, path)
