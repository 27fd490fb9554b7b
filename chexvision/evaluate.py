"""``python -m chexvision evaluate``: score a checkpoint on validation and test, write the report.

The data are re-opened from the checkpoint's saved data config (same cache, same patient-disjoint
split), standardised with the saved training statistics, and scored by either track
(``--track``; a checkpoint from one track evaluates with the other to float tolerance). The
threshold is chosen on validation only; the test split is touched here and nowhere else.
``chexvision.report.write_evaluation`` writes ``metrics.json``, the scores, the plots and
``REPORT.md`` into the run directory (or ``--out``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import outputs, validate
from .config import DEVICES, TRACKS, parse_threshold
from .errors import UserError

HELP = "score a checkpoint on validation and test; write metrics.json, plots and REPORT.md"

SCORE_BATCH = 256


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", metavar="DIR", required=True,
                   help="a run directory (its best/ checkpoint is used) or a checkpoint folder")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: report validation and test (default); val: validation only")
    p.add_argument("--track", choices=TRACKS, default="numpy",
                   help="engine to score with; either scores a checkpoint of either track (default: numpy, which "
                        "needs no torch)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch track only (default: cpu)")
    p.add_argument("--threshold", default=None,
                   help="youden, fixed:P or sensitivity:S, chosen on validation (default: the training config's)")
    p.add_argument("--out", metavar="DIR", default=None, help="where to write the report (default: the run directory)")
    p.add_argument("--data-dir", dest="eval_data_dir", metavar="DIR", default=None,
                   help="the dataset's folder, if it moved since training (e.g. a run trained on Kaggle); "
                        "with --dataset: the external data set's folder")
    p.add_argument("--cache", dest="eval_cache", metavar="DIR", default=None,
                   help="the preprocessing cache folder, if it moved since training; with --dataset: where the "
                        "external set is cached (default ./cache/<dataset>-...)")
    from .data.dataset import DATASETS

    p.add_argument("--dataset", dest="dataset", choices=DATASETS, default=None,
                   help="external validation: score every image of this other data set (in --data-dir) at the "
                        "run's saved threshold; writes to --out (default RUN/external-<dataset>/)")
    p.add_argument("--force", action="store_true",
                   help="replace same-named files in --out that an earlier evaluation did not write")
    p.add_argument("--n-boot", type=int, default=1000,
                   help=f"bootstrap resamples for AUC intervals, 1 to {validate.MAX_N_BOOT:,} (default: 1000)")
    p.add_argument("--gallery", type=int, default=3, metavar="N",
                   help="REPORT.md shows explanation maps of the N most confident true positives, false positives "
                        "and false negatives (default: 3; 0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_engine(checkpoint: ckpt.Checkpoint, track: str | None = None, device: str = "cpu"):
    """An engine of ``track`` (default: the training track) holding the checkpoint's weights."""
    from .tracks import make_engine

    train = checkpoint.train
    track = track or train["track"]
    engine = make_engine(track, checkpoint.model_spec, dtype=train["dtype"], device=device)
    engine.build_model(0)  # the model first: its own state says what model.npz may hold, checked before reading
    state = checkpoint.model_state(expected=engine.model_state())
    engine.load_model_state(state, source=str(checkpoint.dir / ckpt.MODEL_FILE))
    return engine


def load_standardizer(checkpoint: ckpt.Checkpoint):
    from .data import Standardizer

    try:
        return Standardizer.from_arrays(checkpoint.standardizer_arrays())
    except (KeyError, ValueError) as e:
        raise UserError(f"{checkpoint.dir / ckpt.STANDARDIZER_FILE}: not a standardizer ({e})") from None


def check_engine(track: str, device: str = "cpu") -> None:
    """Fail now, before anything is created, if ``track`` / ``device`` cannot run here
    (torch missing, ``--device cuda`` without CUDA)."""
    from .tracks import load_track

    mod = load_track(track)
    if track == "torch":
        mod.resolve_device(device)


def open_data(data_cfg: dict, progress: bool = False, opener=None):
    """``open_dataset`` (or ``opener``), leaving nothing behind when it fails: a cache folder this
    call created that holds nothing but its ``.lock`` (the listing failed: bad ``--data-dir``,
    empty folder) is removed again, with the parent folders it created."""
    from .data import open_dataset

    opener = opener or open_dataset
    cache = Path(data_cfg["cache"]).expanduser().resolve() if data_cfg.get("cache") else None
    created = []
    if cache is not None:
        p = cache
        while not p.exists() and p != p.parent:
            created.append(p)
            p = p.parent
    try:
        return opener(data_cfg, progress=progress)
    except BaseException:
        for d in created:  # innermost first
            try:
                if d.is_dir() and not d.is_symlink() and {c.name for c in d.iterdir()} <= {".lock"}:
                    (d / ".lock").unlink(missing_ok=True)
                    d.rmdir()
            except OSError:
                break
        raise


def score_split(engine, ds, idx, standardizer, layout: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """P(abnormal) and labels of the images ``idx``, in order: (N,) for one output; (N, K) probabilities
    and labels (1 / 0 / -1 masked) for K findings."""
    from numpy_nn.layers import sigmoid

    from .data import BatchLoader

    loader = BatchLoader(ds, idx, SCORE_BATCH, standardizer, shuffle=False, layout=layout, dtype=np.dtype(dtype))
    labels = ds.labels[idx] if ds.task.is_binary else ds.targets[idx]
    return sigmoid(engine.logits(loader)), labels


def run(args) -> int:
    validate.check_int(args.n_boot, "--n-boot", 1, validate.MAX_N_BOOT)
    validate.check_int(args.gallery, "--gallery", 0, 50)
    if args.threshold is not None:
        parse_threshold(args.threshold)
    if args.out:
        outputs.claim_outputs(Path(args.out), [], args.force)  # a file or a file's child: refused before scoring
    if getattr(args, "dataset", None):
        from .external import run_external

        return run_external(args)
    evaluate_checkpoint(args.checkpoint, track=args.track, device=args.device, threshold=args.threshold,
                        out=args.out, split=args.split, data_dir=args.eval_data_dir, cache=args.eval_cache,
                        n_boot=args.n_boot, progress=not args.no_progress and sys.stderr.isatty(), force=args.force,
                        gallery=args.gallery)
    return 0


def evaluate_checkpoint(checkpoint_path, *, track: str = "numpy", device: str = "cpu", threshold: str | None = None,
                        out=None, split: str = "test", data_dir: str | None = None, cache: str | None = None,
                        n_boot: int = 1000, progress: bool = False, ds=None, command: str = "evaluate",
                        force: bool = False, gallery: int = 3) -> dict:
    """What ``python -m chexvision evaluate`` does, callable (``train`` ends with it).

    Scores the checkpoint's validation split (and test split, unless ``split="val"``) with
    ``track``, chooses the threshold on validation, writes the artifacts with
    ``report.write_evaluation`` into ``out`` (default: the run directory) and prints a summary.
    ``ds`` is the already opened dataset of the checkpoint's data config (``train`` passes its
    own); by default it is reopened from the saved config. Python warnings raised on the way
    (e.g. bootstrap resamples holding one class) are printed as one line each, without source.

    Returns ``write_evaluation``'s result.
    """
    from .report import write_evaluation
    from .tracks import layout

    checkpoint = ckpt.load_checkpoint(checkpoint_path)
    train = checkpoint.train
    threshold = threshold or train.get("threshold", "youden")
    method, value = parse_threshold(threshold)
    engine = load_engine(checkpoint, track, device)
    standardizer = load_standardizer(checkpoint)
    if ds is None:
        from .data import reopen_config

        check_engine(track, device)
        # The checkpoint's cache path is only read from; files are created only under --cache or ./cache.
        ds = open_data(reopen_config(checkpoint.data, data_dir, cache), progress=progress)
    lay = layout(checkpoint.model_spec)

    val_idx = ds.indices("val")
    if len(val_idx) == 0:
        raise UserError("the validation split is empty; the threshold is chosen on it")
    val_scores, val_labels = score_split(engine, ds, val_idx, standardizer, lay, train["dtype"])
    test_scores = test_labels = test_groups = None
    if split == "test":
        test_idx = ds.indices("test")
        if len(test_idx) == 0:
            raise UserError("the test split is empty (the data config has --test-fraction 0?); use --split val")
        test_scores, test_labels = score_split(engine, ds, test_idx, standardizer, lay, train["dtype"])
        test_groups = ds.patients[test_idx]

    gallery_fn = None
    if gallery > 0:
        from .explain import gallery as explain_gallery

        head_idx, head_scores, head_labels = (test_idx, test_scores, test_labels) if test_scores is not None \
            else (val_idx, val_scores, val_labels)
        gallery_fn = explain_gallery(engine, standardizer, checkpoint.model_spec, ds.images, head_idx, head_scores,
                                     head_labels, ds.paths, "test" if test_scores is not None else "val", gallery)
    out = Path(out) if out else checkpoint.run_dir
    history_path = checkpoint.run_dir / ckpt.HISTORY_FILE
    history = (validate.check_history(ckpt.read_json(history_path), str(history_path))
               if history_path.is_file() else None)
    config = dict(checkpoint.config, evaluated={"checkpoint": str(checkpoint.dir), "track": track, "device": device,
                                                "epoch": checkpoint.meta.get("epoch"),
                                                "run": checkpoint.run_dir.name})
    if not ds.task.is_binary:
        from .findings_cli import evaluate_findings

        return evaluate_findings(out, ds, checkpoint, track, threshold, method, value, n_boot, history, config,
                                 val_scores, val_labels, test_scores, test_labels, force=force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = write_evaluation(out, val_scores=val_scores, val_labels=val_labels, test_scores=test_scores,
                                  test_labels=test_labels, history=history, config=config, threshold_method=method,
                                  threshold_value=value, n_boot=n_boot, seed=train.get("seed", 0),
                                  val_groups=ds.patients[val_idx], test_groups=test_groups,
                                  train_labels=ds.labels[ds.indices("train")], gallery=gallery_fn,
                                  force=force)
    # warnings as one line each, beside the summary on stdout (stderr is for errors): no source lines
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"chexvision {command}: warning: {message}")
    for line in result["warnings"]:
        print(f"chexvision {command}: warning: {line}")
    thr = result["threshold"]["value"]
    print(f"chexvision {command}: evaluated {checkpoint.dir} (epoch {checkpoint.meta.get('epoch')}) with the {track} "
          f"track; threshold {thr:.4g} ({threshold} on validation); AUC intervals: {result['bootstrap']['method']}")
    for name in ("val", "test"):
        m = result.get(name)
        if m:
            print(f"  {name:<4} n={m['n']:<6} ROC-AUC {m['roc_auc']:.4f}  accuracy {m['accuracy']:.3f}  "
                  f"balanced {m['balanced_accuracy']:.3f}  sensitivity {m['recall']:.3f}  "
                  f"specificity {m['specificity']:.3f}")
    print(f"  wrote {out / 'metrics.json'}, {out / 'REPORT.md'}, scores and plots")
    return result
