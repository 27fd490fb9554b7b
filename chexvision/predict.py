"""``python -m chexvision predict``: P(abnormal) and a label for each image, with either track.

Preprocessing is training's: ``chexvision.data.load_image`` (grayscale, resized to the
checkpoint's image size, uint8), then the checkpoint's saved standardisation. The label uses the
saved threshold: the one in the run's ``metrics.json`` when ``evaluate`` has been run on this
checkpoint, otherwise the one chosen on validation during training (``meta.json``).

A file that cannot be scored (missing, a directory, truncated, not an image, too large) is
reported on stderr as one line naming it and the reason; the other files are still scored.
Exit status: 0 all scored, 1 some files failed, 2 nothing scored (or a bad checkpoint).
With the NumPy track nothing here imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import outputs, validate
from .config import DEVICES, TRACKS
from .errors import UserError
from .explain import METHODS

HELP = "P(abnormal) and normal/abnormal for images, from a checkpoint, with either track"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".dcm", ".dicom")
PREDICT_BATCH = 64


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", metavar="DIR", required=True,
                   help="a run directory (its best/ checkpoint is used) or a checkpoint folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", metavar="PATH", nargs="+", help="one or more image files")
    src.add_argument("--dir", metavar="DIR", help=f"every image in DIR ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", metavar="FILE", help="also write the results to FILE (.csv or .json); an existing file "
                   "that predict did not write is refused")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if predict did not write it, and existing --explain files")
    p.add_argument("--track", choices=TRACKS, default="numpy",
                   help="engine to score with (default: numpy, which never imports torch)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch track only (default: cpu)")
    p.add_argument("--threshold", type=float, default=None,
                   help="override the saved decision threshold (a number from 0 to 1)")
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="also write, per image, STEM.png (the map over the image), STEM.npy (the raw map at the "
                        "model's input size) and STEM.json (how it was made) into DIR; existing files are refused "
                        "(--force replaces them)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="explanation method (default: gradcam for the CNN, saliency for the MLP); "
                        "gradcam needs a convolutional model")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="Grad-CAM layer, a dotted name as in the state_dict (default: the last convolutional "
                        "block: features.7 for the default CNN, features.denseblock4 for densenet121)")
    p.add_argument("--target", metavar="NAME|INDEX", default=None,
                   help="the output to explain, by name or index (default: the only output, abnormal, for the "
                        "binary task; for --task findings each image's most probable finding)")


def saved_threshold(checkpoint: ckpt.Checkpoint) -> tuple[float, str]:
    """``(threshold, where it came from)``: metrics.json of this checkpoint, else meta.json."""
    metrics_path = checkpoint.run_dir / "metrics.json"
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            evaluated = (metrics.get("config") or {}).get("evaluated") or {}
            same = (Path(str(evaluated.get("checkpoint", ""))).name == checkpoint.dir.name
                    and evaluated.get("epoch") == checkpoint.meta.get("epoch"))
            value = metrics["threshold"]["value"]
        except (ValueError, KeyError, TypeError, AttributeError):
            same = False  # an unreadable or foreign metrics.json: fall back to the training threshold
        if same and value is not None:
            value = validate.check_threshold(value, str(metrics_path))  # ours, but edited: refuse, never guess
            return value, f"{metrics_path} ({metrics['threshold'].get('method')} on validation)"
    thr = checkpoint.meta.get("threshold") or {}
    if thr.get("value") is None:
        raise UserError(f"{checkpoint.dir / ckpt.META_FILE}: no decision threshold stored; pass --threshold")
    value = validate.check_threshold(thr["value"], str(checkpoint.dir / ckpt.META_FILE))
    return value, f"{checkpoint.dir / ckpt.META_FILE} ({thr.get('method')} on validation at training)"


def collect_paths(images: list[str] | None, directory: str | None) -> list[Path]:
    if images:
        return [Path(p) for p in images]
    d = Path(directory)
    if not d.exists():
        raise UserError(f"--dir {d}: no such directory")
    if not d.is_dir():
        raise UserError(f"--dir {d}: not a directory")
    paths = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"--dir {d}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def read_image(path: Path, image_size: int) -> np.ndarray:
    """``load_image`` with every failure turned into ``UserError("PATH: reason")``."""
    from .data import load_image

    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an image")
    try:
        return load_image(path, image_size)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is the file's fault: say so in one line
        raise UserError(f"{path}: cannot read as an image ({type(e).__name__}: {e})") from None


def model_inputs(engine, standardizer, images: np.ndarray, spec: dict) -> np.ndarray:
    """uint8 images (N, H, W) -> the model's input, preprocessed exactly as training batches."""
    from .tracks import layout

    x = standardizer.transform(images, dtype=engine.dtype)  # (N, H, W) uint8 -> standardised, the model's dtype
    return x.reshape(len(x), -1) if layout(spec) == "flat" else x[:, None]  # (N, H·W) or (N, 1, H, W)


def predict_images(engine, standardizer, images: np.ndarray, spec: dict) -> np.ndarray:
    """P(abnormal) for uint8 images (N, H, W), preprocessed exactly as training batches."""
    from numpy_nn.layers import sigmoid

    x = model_inputs(engine, standardizer, images, spec)
    batches = [(x[i:i + PREDICT_BATCH], None) for i in range(0, len(x), PREDICT_BATCH)]
    return sigmoid(engine.logits(batches))


def run(args) -> int:
    from .evaluate import load_engine, load_standardizer
    from .findings_cli import predict_findings, task_of

    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out {args.out}: give a .csv or .json file name")
    if args.out:
        outputs.claim_file(Path(args.out), args.force)
    if args.threshold is not None:
        validate.check_threshold(args.threshold, "--threshold")
    checkpoint = ckpt.load_checkpoint(args.checkpoint)
    task = task_of(checkpoint)
    paths = collect_paths(args.image, args.dir)
    if not task.is_binary:
        threshold = source = None  # per finding, in predict_findings
    elif args.threshold is not None:
        threshold, source = float(args.threshold), "--threshold"
    else:
        threshold, source = saved_threshold(checkpoint)
    if args.explain is None and (args.method is not None or args.layer is not None or args.target is not None):
        raise UserError("--method, --layer and --target choose the explanation: add --explain DIR")
    engine = load_engine(checkpoint, args.track, args.device)
    standardizer = load_standardizer(checkpoint)
    size = int(checkpoint.model_spec["image_size"])
    explaining = _plan_explanations(args, checkpoint, engine, paths) if args.explain else None

    good, arrays, failed = [], [], 0
    for path in paths:
        try:
            arrays.append(read_image(path, size))
            good.append(path)
        except UserError as e:
            print(f"chexvision predict: error: {e}", file=sys.stderr)
            failed += 1
    rows = []
    if good and not task.is_binary:  # K probabilities and flags at the per-finding thresholds
        rows, bad = predict_findings(args, checkpoint, task, good,
                                     predict_images(engine, standardizer, np.stack(arrays), checkpoint.model_spec))
        failed += bad
        if explaining and rows:  # each image's map for --target or its most probable finding
            _explain(args, explaining, engine, standardizer, checkpoint.model_spec, rows,
                     dict(zip(map(str, good), arrays)))
        return (2 if not rows else 1) if failed else 0
    if good:
        probs = predict_images(engine, standardizer, np.stack(arrays), checkpoint.model_spec)
        for path, p in zip(good, probs):
            if not np.isfinite(p):  # never an answer: say so for this file
                print(f"chexvision predict: error: {path}: the model's score is not a finite number", file=sys.stderr)
                failed += 1
                continue
            label = int(p >= threshold)
            rows.append({"path": str(path), "p_abnormal": float(p), "label": label,
                         "prediction": "abnormal" if label else "normal", "threshold": threshold})
    if explaining and rows:
        _explain(args, explaining, engine, standardizer, checkpoint.model_spec, rows, dict(zip(map(str, good), arrays)))
    _emit(rows, args, threshold, source)
    if failed:
        return 2 if not rows else 1
    return 0


def _plan_explanations(args, checkpoint: ckpt.Checkpoint, engine, paths: list[Path]) -> dict:
    """Method, layer and file names, all checked before any image is scored."""
    from .explain import check_method, default_method, explanation_files, grad_cam_layer, output_names, parse_target

    spec = checkpoint.model_spec
    outputs = output_names(checkpoint.config)
    target = parse_target(args.target, outputs)
    method = args.method or default_method(spec)
    check_method(method, spec)
    if args.layer is not None and method != "gradcam":
        raise UserError(f"--layer applies to --method gradcam, not {method}")
    layer = grad_cam_layer(engine, args.layer) if method == "gradcam" else None
    files = explanation_files(Path(args.explain), paths, force=args.force)
    return {"method": method, "layer": layer, "files": files, "outputs": outputs, "target": target}


def _explain(args, plan: dict, engine, standardizer, spec: dict, rows: list[dict], arrays: dict) -> None:
    """Maps of the images in ``rows`` (``arrays``: path -> uint8 image; a row-less image is not
    explained), each for its output: ``--target``, the only output, or its most probable one."""
    from .explain import choose_targets, compute_maps, describe_method, explained_output, write_explanations

    outputs = plan["outputs"]
    images = np.stack([arrays[r["path"]] for r in rows])  # the scored images, in the order of rows
    probs = np.array([[r["probabilities"][n] for n in outputs] if "probabilities" in r else [r["p_abnormal"]]
                      for r in rows])  # (N, K)
    targets = choose_targets(plan["target"], probs)
    chosen = ("the only output" if len(outputs) == 1 else "--target" if plan["target"] is not None
              else "most probable output")
    x = model_inputs(engine, standardizer, images, spec)
    maps = compute_maps(engine, x, plan["method"], plan["layer"], targets)
    record = describe_method(plan["method"], plan["layer"], args.track)
    explained = [explained_output(r, outputs, k, chosen) for r, k in zip(rows, targets)]
    write_explanations(args.explain, rows, images, maps, record, plan["files"], explained)
    print(f"chexvision predict: wrote {len(rows)} explanation(s) ({plan['method']}) to {args.explain}",
          file=sys.stderr)


def _emit(rows: list[dict], args, threshold: float, source: str) -> None:
    if args.out:
        from numpy_nn.serialization import atomic_write

        text = _json_text(rows) if args.out.lower().endswith(".json") else _csv_text(rows)
        atomic_write(args.out, lambda f: f.write(text.encode("utf-8")))
    if args.json:
        sys.stdout.write(_json_text(rows))
        return
    if rows:
        width = max(len(r["path"]) for r in rows)
        for r in rows:
            print(f"{r['path']:<{width}}  {r['p_abnormal']:.4f}  {r['prediction']}")
        print(f"threshold {threshold:.4g} from {source}")


def _json_text(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2, allow_nan=False) + "\n"  # strict JSON: a NaN is a bug, never output


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["path", "p_abnormal", "label", "prediction", "threshold"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
