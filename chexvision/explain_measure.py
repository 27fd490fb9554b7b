"""Do the maps light up the planted finding? Measured on a run trained on synthetic data.

``python -m chexvision.explain_measure --checkpoint RUN`` regenerates the run's synthetic images
with the planted lesions' masks (``make_synthetic(..., return_masks=True)``, the same images),
computes each method's map for the abnormal images of the test split, and prints per method:

* **mass inside**: the share of the map's mass inside the lesion, Σ_mask |m| / Σ |m|, averaged
  over images (|m|: gradient × input is signed; the other maps are ≥ 0);
* **lesion area**: the lesion's share of the image, averaged over the same images (what a map
  spread evenly would score);
* **enrichment**: mass inside / lesion area, per image, then the median (1 = no better than even);
* **peak inside**: the share of images whose map maximum lies in the lesion (the pointing game).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import UserError
from .explain import METHODS, check_method, compute_maps, grad_cam_layer


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Σ_mask |m| / Σ |m| per image; maps (N, H, W) float, masks (N, H, W) bool -> (N,).
    An all-zero map has no mass to place: its share is NaN (reported, never averaged as 0)."""
    mass = np.abs(maps).reshape(len(maps), -1)  # (N, H, W) -> (N, H·W)
    total = mass.sum(axis=1)
    inside = (mass * masks.reshape(len(masks), -1)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def peak_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each map's largest |m| lies inside the mask (N,) bool."""
    flat = np.abs(maps).reshape(len(maps), -1).argmax(axis=1)
    return masks.reshape(len(masks), -1)[np.arange(len(maps)), flat]


def measure(engine, standardizer, spec: dict, images: np.ndarray, masks: np.ndarray, methods) -> dict:
    """``{method: {"mass_inside", "lesion_area", "enrichment_median", "peak_inside", "n"}}``."""
    from .predict import model_inputs

    x = model_inputs(engine, standardizer, images, spec)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    out = {}
    for method in methods:
        layer = grad_cam_layer(engine) if method == "gradcam" else None
        maps = compute_maps(engine, x, method, layer)
        share = mass_inside(maps, masks)
        ok = np.isfinite(share)
        out[method] = {"mass_inside": float(share[ok].mean()), "lesion_area": float(area[ok].mean()),
                       "enrichment_median": float(np.median(share[ok] / area[ok])),
                       "peak_inside": float(peak_inside(maps, masks).mean()), "n": int(ok.sum()),
                       "n_empty_maps": int((~ok).sum()), "layer": layer}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m chexvision.explain_measure", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="a run trained with --dataset synthetic")
    p.add_argument("--track", choices=("numpy", "torch"), default="numpy")
    p.add_argument("--methods", default=None, help="comma-separated (default: every method the model allows)")
    p.add_argument("--limit", type=int, default=200, help="abnormal test images measured (default: 200)")
    args = p.parse_args(argv)
    try:
        table = _run(args)
    except UserError as e:
        print(f"chexvision.explain_measure: error: {e}", file=sys.stderr)
        return 2
    print(f"{'method':<11} {'n':>4}  {'mass inside':>11}  {'lesion area':>11}  {'enrichment':>10}  {'peak inside':>11}")
    for method, r in table.items():
        print(f"{method:<11} {r['n']:>4}  {r['mass_inside']:>11.3f}  {r['lesion_area']:>11.3f}  "
              f"{r['enrichment_median']:>9.2f}x  {r['peak_inside']:>11.3f}")
    return 0


def _run(args) -> dict:
    from . import checkpoint as ckpt
    from .data import open_dataset
    from .data.synthetic import make_synthetic
    from .evaluate import load_engine, load_standardizer

    checkpoint = ckpt.load_checkpoint(args.checkpoint)
    data = checkpoint.data
    if data.get("dataset") != "synthetic":
        raise UserError(f"{args.checkpoint}: trained on {data.get('dataset')!r}; lesion masks exist for synthetic data only")
    spec = checkpoint.model_spec
    methods = args.methods.split(",") if args.methods else [m for m in METHODS if m != "gradcam" or spec["kind"] != "mlp"]
    for m in methods:
        check_method(m, spec)
    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    ds = open_dataset(data, progress=False)
    images, _, _, _, masks = make_synthetic(int(data["synthetic_size"]), ds.image_size, int(data["seed"]),
                                            return_masks=True)
    if not np.array_equal(images, ds.images):
        raise UserError("the regenerated synthetic images differ from the run's: cannot align the masks")
    idx = ds.indices("test")
    idx = idx[ds.labels[idx] == 1][: args.limit]
    engine = load_engine(checkpoint, args.track)
    return measure(engine, load_standardizer(checkpoint), spec, np.asarray(ds.images[idx]), masks[idx], methods)


if __name__ == "__main__":
    sys.exit(main())
