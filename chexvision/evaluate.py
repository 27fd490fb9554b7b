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
    p.add_argument("--track", choices=TRACKS, default=None, help="engine to score with (default: the training track)")
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


def score_split(engine, ds, idx, standardizer, layout: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """P(abnormal) and labels of the images ``idx``, in order: (N,) for one output; (N, K) probabilities
    and labels (1 / 0 / -1 masked) for K findings."""
    from numpy_nn.layers import sigmoid

    from .data import BatchLoader

    loader = BatchLoader(ds, idx, SCORE_BATCH, standardizer, shuffle=False, layout=layout, dtype=np.dtype(dtype))
    labels = ds.labels[idx] if ds.task.is_binary else ds.targets[idx]
    return sigmoid(engine.logits(loader)), labels


def run(args) -> int:
    from .data import open_dataset, reopen_config
    from .report import write_evaluation
    from .tracks import layout

    validate.check_int(args.n_boot, "--n-boot", 1, validate.MAX_N_BOOT)
    validate.check_int(args.gallery, "--gallery", 0, 50)
    if args.threshold is not None:
        parse_threshold(args.threshold)
    if args.out:
        outputs.claim_outputs(Path(args.out), [], args.force)  # a file or a file's child: refused before scoring
    if getattr(args, "dataset", None):
        from .external import run_external

        return run_external(args)
    checkpoint = ckpt.load_checkpoint(args.checkpoint)
    train = checkpoint.train
    track = args.track or train["track"]
    threshold = args.threshold or train.get("threshold", "youden")
    method, value = parse_threshold(threshold)
    engine = load_engine(checkpoint, track, args.device)
    standardizer = load_standardizer(checkpoint)
    # The checkpoint's cache path is only read from; files are created only under --cache or ./cache.
    data_cfg = reopen_config(checkpoint.data, args.eval_data_dir, args.eval_cache)
    ds = open_dataset(data_cfg, progress=not args.no_progress and sys.stderr.isatty())
    lay = layout(checkpoint.model_spec)

    val_idx = ds.indices("val")
    if len(val_idx) == 0:
        raise UserError("the validation split is empty; the threshold is chosen on it")
    val_scores, val_labels = score_split(engine, ds, val_idx, standardizer, lay, train["dtype"])
    test_scores = test_labels = None
    if args.split == "test":
        test_idx = ds.indices("test")
        if len(test_idx) == 0:
            raise UserError("the test split is empty (the data config has --test-fraction 0?); use --split val")
        test_scores, test_labels = score_split(engine, ds, test_idx, standardizer, lay, train["dtype"])

    gallery = None
    if args.gallery > 0:
        from .explain import gallery as explain_gallery

        head_idx, head_scores, head_labels = (test_idx, test_scores, test_labels) if test_scores is not None \
            else (val_idx, val_scores, val_labels)
        gallery = explain_gallery(engine, standardizer, checkpoint.model_spec, ds.images, head_idx, head_scores,
                                  head_labels, ds.paths, "test" if test_scores is not None else "val", args.gallery)
    out = Path(args.out) if args.out else checkpoint.run_dir
    history_path = checkpoint.run_dir / ckpt.HISTORY_FILE
    history = (validate.check_history(ckpt.read_json(history_path), str(history_path))
               if history_path.is_file() else None)
    config = dict(checkpoint.config, evaluated={"checkpoint": str(checkpoint.dir), "track": track,
                                                "epoch": checkpoint.meta.get("epoch")})
    if not ds.task.is_binary:
        from .findings_cli import evaluate_findings

        return evaluate_findings(out, ds, checkpoint, track, threshold, method, value, args.n_boot, history, config,
                                 val_scores, val_labels, test_scores, test_labels, force=args.force)
    result = write_evaluation(out, val_scores=val_scores, val_labels=val_labels, test_scores=test_scores,
                              test_labels=test_labels, history=history, config=config, threshold_method=method,
                              threshold_value=value, n_boot=args.n_boot, seed=train.get("seed", 0),
                              gallery=gallery, force=args.force)
    thr = result["threshold"]["value"]
    print(f"chexvision evaluate: {checkpoint.dir} (epoch {checkpoint.meta.get('epoch')}) with the {track} track; "
          f"threshold {thr:.4g} ({threshold} on validation)")
    for name in ("val", "test"):
        m = result.get(name)
        if m:
            print(f"  {name:<4} n={m['n']:<6} ROC-AUC {m['roc_auc']:.4f}  accuracy {m['accuracy']:.3f}  "
                  f"balanced {m['balanced_accuracy']:.3f}  sensitivity {m['recall']:.3f}  "
                  f"specificity {m['specificity']:.3f}")
    print(f"  wrote {out / 'metrics.json'} and {out / 'REPORT.md'}")
    return 0
