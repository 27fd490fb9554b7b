"""Explanation maps for the application: compute them with either track, draw them, write them.

Computing (``compute_maps``) and drawing (``plot_overlay``, ``plot_gallery``) are separate, as
pytorch-grad-cam separates its CAM from ``show_cam_on_image``. The maps come from
``numpy_nn.explain`` (NumPy track, never imports torch) or ``torch_ref.explain`` (torch track),
the same classes in both; ``parity/test_explain.py`` shows they agree.

Used by ``predict --explain DIR`` (``write_explanations``: per image an overlay PNG, the raw map
as ``.npy`` and a JSON record, named after the image's stem) and by ``evaluate`` (a gallery of
the most confident true positives, false positives and false negatives in REPORT.md).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .errors import UserError

METHODS = ("saliency", "gradxinput", "smoothgrad", "gradcam")
METHOD_TEXT = {
    "saliency": "saliency |d logit / d pixel|",
    "gradxinput": "gradient × input",
    "smoothgrad": "SmoothGrad (saliency averaged over noisy copies)",
    "gradcam": "Grad-CAM",
}
SMOOTHGRAD = {"n_samples": 25, "noise_level": 0.15, "seed": 0}  # the SmoothGrad paper's 10-20 % noise
EXPLAIN_BATCH = 32
OUTPUT_NAME = "abnormal"  # the single logit of the binary task: P(abnormal) = sigmoid(logit)


def is_convolutional(spec: dict) -> bool:
    return spec["kind"] != "mlp"


def default_method(spec: dict) -> str:
    """Grad-CAM for convolutional models, saliency for the MLP (which has no feature maps)."""
    return "gradcam" if is_convolutional(spec) else "saliency"


def check_method(method: str, spec: dict) -> None:
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if method == "gradcam" and not is_convolutional(spec):
        raise UserError("--method gradcam needs a convolutional model (--model cnn); this checkpoint is an MLP: "
                        "use --method saliency, gradxinput or smoothgrad")


def _library(engine):
    """numpy_nn.explain or torch_ref.explain, whichever matches the engine's model."""
    if type(engine).__module__.endswith("torch_track"):
        from torch_ref import explain
    else:
        from numpy_nn import explain
    return explain


def grad_cam_layer(engine, layer: str | None = None) -> str:
    """``layer`` checked against the model's dotted names, or the default (last convolutional block)."""
    lib = _library(engine)
    if layer is None:
        return lib.default_layer(engine.model)
    names = [n for n, _ in engine.model.named_modules() if n]
    if layer not in names:
        raise UserError(f"--layer {layer}: no such layer; the model's layers are {', '.join(names)}")
    return layer


def output_names(config: dict) -> tuple[str, ...]:
    """The model's output names from a checkpoint's config.json: its "task" "outputs" (--task
    findings), else the binary task's single output."""
    task = config.get("task") or {}
    return tuple(str(o) for o in task.get("outputs") or (OUTPUT_NAME,))


def parse_target(value: str | None, outputs) -> int | None:
    """``--target NAME|INDEX`` -> the output's index (a name matches case-insensitively).

    ``None`` (no ``--target``) -> 0 for a single-output model; for several outputs ``None``, i.e.
    each image's most probable output (``choose_targets``)."""
    outputs = tuple(outputs)
    if value is None:
        return 0 if len(outputs) == 1 else None
    listed = ", ".join(f"{i} {name}" for i, name in enumerate(outputs))
    by_name = {name.lower(): i for i, name in enumerate(outputs)}
    text = str(value).strip()
    if text.lower() in by_name:
        return by_name[text.lower()]
    if text.lstrip("+-").isdigit():
        index = int(text)
        if 0 <= index < len(outputs):
            return index
        raise UserError(f"--target {value}: output index out of range; the model's outputs are {listed}")
    raise UserError(f"--target {value}: no such output; the model's outputs are {listed}")


def choose_targets(target: int | None, probs: np.ndarray) -> np.ndarray:
    """The output explained for each image: ``target`` for all, or (``None``) each image's most
    probable output. ``probs``: (N,) or (N, K). Returns (N,) int64."""
    probs = np.asarray(probs).reshape(len(probs), -1)  # (N,) -> (N, 1)
    if target is None:
        return np.argmax(probs, axis=1).astype(np.int64)
    return np.full(len(probs), int(target), dtype=np.int64)


def compute_maps(engine, x: np.ndarray, method: str, layer: str | None = None, target=0) -> np.ndarray:
    """Maps of ``method`` for the standardised batch ``x``, at the model's input size.

    Args:
        engine: a ``chexvision.tracks`` engine holding the model.
        x: (N, H·W) for the MLP or (N, 1, H, W), exactly as the model is fed.
        method: one of ``METHODS``; ``layer``: Grad-CAM's dotted layer name (checked already).
        target: the output explained (column of the logits): one int for every image, or an (N,)
            array of one per image (the images sharing a target are explained together).

    Returns: (N, H, W) float64, raw values (saliency ≥ 0, gradient × input signed, Grad-CAM ≥ 0);
    for an input of several channels, the sum over channels.
    """
    if np.ndim(target):
        targets = np.asarray(target, dtype=np.int64).reshape(len(x))
        side = int(round(np.sqrt(x[0].size))) if len(x) else 0
        maps = np.zeros((len(x),) + (tuple(x.shape[2:]) if x.ndim == 4 else (side, side)))
        for k in np.unique(targets):
            rows = np.flatnonzero(targets == k)
            maps[rows] = compute_maps(engine, x[rows], method, layer, int(k))
        return maps
    lib = _library(engine)
    model = engine.model
    if method == "gradcam":
        explainer = lib.GradCAM(model, layer)
    elif method == "gradxinput":
        explainer = lib.InputXGradient(model)
    elif method == "smoothgrad":
        explainer = lib.SmoothGrad(lib.Saliency(model))
    else:
        explainer = lib.Saliency(model)
    kwargs = dict(SMOOTHGRAD) if method == "smoothgrad" else {}
    side = int(round(np.sqrt(x[0].size)))  # the MLP's flat input is a square image
    h, w = x.shape[2:] if x.ndim == 4 else (side, side)
    out = []
    for s in range(0, len(x), EXPLAIN_BATCH):
        batch = x[s:s + EXPLAIN_BATCH]
        if lib.__name__.startswith("torch_ref"):
            import torch

            m = explainer.attribute(torch.from_numpy(np.ascontiguousarray(batch)).to(engine.device),
                                    target=target, **kwargs).detach().cpu().numpy()
        else:
            m = explainer.attribute(batch, target=target, **kwargs)
        # (B, C, H, W) or (B, H·W) -> (B, H, W); a multi-channel input's map is summed over channels
        out.append(np.asarray(m, dtype=np.float64).reshape(len(batch), -1, h, w).sum(axis=1))
    return np.concatenate(out) if out else np.zeros((0, h, w))


def describe_method(method: str, layer: str | None, track: str) -> dict:
    """The JSON record of how a map was made (the output explained is added per image)."""
    rec = {"method": method, "description": METHOD_TEXT[method], "output": {"index": 0, "name": OUTPUT_NAME,
           "explained": "the logit of P(abnormal)"}, "track": track}
    if method == "gradcam":
        rec["layer"] = layer
    if method == "smoothgrad":
        rec["smoothgrad"] = dict(SMOOTHGRAD, noise="sigma = noise_level * (max - min) of the standardised image",
                                 averaged="|gradient| (as captum's NoiseTunnel over Saliency)")
    rec["map"] = {"shape": "model input (H, W)", "scaling": "none: raw values, never clipped or smoothed"}
    return rec


# -- drawing ------------------------------------------------------------------------------------------
def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw(ax, image: np.ndarray, heat: np.ndarray, signed: bool):
    """Grey image, heat map on top (alpha 0.5); signed maps on a diverging scale centred at 0.
    The colour scale spans the map's own range (min–max, or ±max|m| when signed)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if signed:
        lim = float(np.max(np.abs(heat))) or 1.0
        im = ax.imshow(heat, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.5, interpolation="nearest")
    else:
        lo, hi = float(np.min(heat)), float(np.max(heat))
        im = ax.imshow(heat, cmap="jet", vmin=lo, vmax=hi if hi > lo else lo + 1.0, alpha=0.45,
                       interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_overlay(image: np.ndarray, heat: np.ndarray, title: str, method: str) -> bytes:
    """The image (H, W) uint8 as the model saw it, and beside it the same image with its map (H, W)
    over it and a colour bar in the map's own units; PNG bytes."""
    fig = _new_figure((7.4, 3.9))
    ax_img, ax = fig.subplots(1, 2)
    ax_img.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title("as the model saw it", fontsize="small")
    im = _draw(ax, image, heat, signed=method == "gradxinput")
    fig.colorbar(im, ax=ax, shrink=0.85, label=method)
    ax.set_title("map over the image", fontsize="small")
    fig.suptitle(title, fontsize="small")
    return _png(fig)


def plot_gallery(images, heats, captions, title: str, method: str) -> bytes:
    """A row of images with their maps (each with its own colour scale), one caption each."""
    k = len(images)
    fig = _new_figure((2.6 * k + 0.6, 3.0))
    axes = np.atleast_1d(fig.subplots(1, k))
    for ax, image, heat, caption in zip(axes, images, heats, captions):
        _draw(ax, image, heat, signed=method == "gradxinput")
        ax.set_title(caption, fontsize="x-small")
    fig.suptitle(title, fontsize="small")
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -- predict --explain ----------------------------------------------------------------------------
def explanation_files(out_dir: Path, paths: list[Path], force: bool = False) -> dict[Path, tuple[Path, Path, Path]]:
    """``{image: (overlay .png, map .npy, record .json)}`` in ``out_dir``, named after each stem.

    Refuses (UserError) two images with one stem, and any file that already exists unless
    ``force``: nothing the user did not ask to replace is overwritten. A folder or a link in the
    way is always refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--explain {out_dir}: exists and is not a folder")
    seen: dict[str, Path] = {}
    files = {}
    for p in paths:
        stem = p.stem
        if stem in seen:
            raise UserError(f"--explain: {seen[stem]} and {p} would both write {stem}.png; explain them separately")
        seen[stem] = p
        files[p] = (out_dir / f"{stem}.png", out_dir / f"{stem}.npy", out_dir / f"{stem}.json")
    existing = [f for trio in files.values() for f in trio if f.exists() or f.is_symlink()]
    blocking = [f for f in existing if f.is_dir() or f.is_symlink()]
    if blocking:
        raise UserError(f"--explain {out_dir}: {blocking[0]} is a folder or a link in the way; nothing was written")
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UserError(f"--explain {out_dir}: {existing[0]} exists{more}; choose an empty folder, or pass --force to replace them")
    return files


def explained_output(row: dict, outputs, index: int, chosen: str) -> dict:
    """The JSON ``output`` entry of one image: which output its map explains and what it scored.

    ``row``: a predict row, binary (``p_abnormal``, ``prediction``, ``threshold``) or findings
    (``probabilities``, ``flags``, ``thresholds`` keyed by output name); ``chosen``: why this output
    ("the only output", "most probable output", "--target")."""
    name = tuple(outputs)[index]
    if "probabilities" in row:
        p, threshold = row["probabilities"][name], row["thresholds"][name]
        verdict = "flagged" if row["flags"][name] else "not flagged"
    else:
        p, threshold, verdict = row["p_abnormal"], row["threshold"], row["prediction"]
    return {"index": int(index), "name": name, "explained": f"the logit of P({name})", "chosen": chosen,
            "probability": float(p), "threshold": float(threshold), "verdict": verdict}


def write_explanations(out_dir, rows: list[dict], images: np.ndarray, maps: np.ndarray, record: dict,
                       files: dict, explained: list[dict] | None = None) -> None:
    """Per scored image: overlay PNG (title: the explained output's probability and verdict), raw
    map ``.npy`` (H, W) float64, and the JSON ``record`` plus the image's own path, the output
    explained (``explained``, one ``explained_output`` per row; default: binary output 0) and, for
    the binary task, its probability and label."""
    from numpy_nn.serialization import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if explained is None:
        explained = [explained_output(row, (OUTPUT_NAME,), 0, "the only output") for row in rows]
    for row, image, heat, output in zip(rows, images, maps, explained):
        png, npy, rec = files[Path(row["path"])]
        title = (f"{Path(row['path']).name}: P({output['name']}) = {output['probability']:.3f} -> {output['verdict']}\n"
                 f"{METHOD_TEXT[record['method']]}" + (f" at {record['layer']}" if record.get("layer") else ""))
        blob = plot_overlay(image, heat, title, record["method"])
        atomic_write(png, lambda f, b=blob: f.write(b))
        atomic_write(npy, lambda f, m=heat: np.save(f, m, allow_pickle=False))
        meta = dict(record, image=row["path"], output=output, overlay=png.name, map_file=npy.name)
        if "p_abnormal" in row:
            meta.update(p_abnormal=row["p_abnormal"], prediction=row["prediction"], threshold=row["threshold"])
        text = json.dumps(meta, indent=1) + "\n"
        atomic_write(rec, lambda f, t=text: f.write(t.encode("utf-8")))


# -- evaluate's gallery ------------------------------------------------------------------------------
GALLERY_KINDS = (
    ("tp", "true positives", 1, True, -1.0),  # (file key, name, label, predicted abnormal, sort sign)
    ("fp", "false positives", 0, True, -1.0),
    ("fn", "false negatives", 1, False, 1.0),
)


def gallery(engine, standardizer, spec: dict, images, idx: np.ndarray, scores: np.ndarray, labels: np.ndarray,
            names, split: str, per_kind: int = 3):
    """For ``write_evaluation``: ``draw(threshold)`` -> the REPORT.md gallery.

    The ``per_kind`` most confident true positives (highest scores among abnormal images called
    abnormal), false positives (highest among normal ones called abnormal) and false negatives
    (lowest among abnormal ones called normal) of the split, each kind one PNG with the images'
    maps (``default_method``: Grad-CAM for a CNN, saliency for the MLP).

    Args:
        images: the dataset's (N_all, H, W) uint8 images; ``idx`` the split's rows, in the order
            of ``scores`` and ``labels``; ``names``: the dataset's paths (captions).
    """
    from .predict import model_inputs

    method = default_method(spec)
    layer = grad_cam_layer(engine) if method == "gradcam" else None

    def draw(threshold: float) -> dict:
        called = scores >= threshold
        panels = []
        for key, name, label, positive, sign in GALLERY_KINDS:
            chosen = np.flatnonzero((labels == label) & (called == positive))
            total = chosen.size
            chosen = chosen[np.argsort(sign * scores[chosen], kind="stable")][:per_kind]
            if not chosen.size:
                continue
            imgs = np.asarray(images[idx[chosen]])  # (k, H, W) uint8
            maps = compute_maps(engine, model_inputs(engine, standardizer, imgs, spec), method, layer)
            captions = [f"P(abnormal) {scores[i]:.3f}\n{Path(str(names[idx[i]])).name}" for i in chosen]
            title = f"{split}: the {len(chosen)} most confident {name} (of {total})"
            panels.append({"file": f"explain_{key}.png", "title": title,
                           "png": plot_gallery(imgs, maps, captions, title, method)})
        where = f" at layer `{layer}`" if layer else ""
        intro = (f"{METHOD_TEXT[method]}{where}, over images of the {split} split at threshold {threshold:.4g}; "
                 "each map on its own colour scale (red: what raised the abnormality logit most). A map shows what "
                 "moved the model's score, not where a finding is; `predict --explain DIR` writes one per image.")
        return {"intro": intro, "panels": panels}

    return draw
