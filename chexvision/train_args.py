"""The ``train`` command's options and how they become a :class:`TrainConfig`.

Split from ``train.py`` (which holds the training loop): every option of ``python -m chexvision train``,
its default from ``TrainConfig``, and the one place where option text is parsed into typed fields, so a
bad value is a one-line ``UserError`` like every other input check.
"""

from __future__ import annotations

import dataclasses

from . import validate
from .config import (
    DEFAULTS,
    DEVICES,
    DTYPES,
    MODELS,
    OPTIMIZERS,
    SCHEDULER_INTERVALS,
    SCHEDULERS,
    TRACKS,
    TrainConfig,
    parse_hidden,
)
from .data import add_data_arguments
from .errors import UserError


# -- command line ----------------------------------------------------------------------------------
def _opt(p, flag: str, field: str, help: str, **kw) -> None:
    """An option whose default lives in TrainConfig (argparse sees None: "not given")."""
    default = getattr(DEFAULTS, field)
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    if "choices" not in kw:
        kw.setdefault("metavar", {int: "N", float: "X"}.get(kw.get("type"), "SPEC"))
    p.add_argument(flag, dest=field, default=None, help=f"{help} (default: {shown})", **kw)


def add_arguments(p) -> None:
    add_data_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/<dataset>-<track>); a "
                   "non-empty folder that is not a chexvision run is refused")
    g.add_argument("--resume", metavar="OUT", default=None,
                   help="continue the run in OUT from its last/ checkpoint, with its saved configuration")
    g.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out (only a folder holding "
                   "nothing but that run; it is deleted once the new run has saved its first checkpoint)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (also off when stderr is not a TTY)")
    g.add_argument("--no-evaluate", action="store_true",
                   help="skip the final evaluation (by default the best checkpoint is evaluated exactly as "
                        "`evaluate` does: metrics.json, scores, plots, REPORT.md)")
    _opt(g, "--patience", "patience", "stop after this many epochs without a better validation AUC; 0: never",
         type=int)
    _opt(g, "--select-window", "select_window", "best/ keeps the epoch whose validation AUC averaged over the "
         "last N epochs is highest, so that one lucky epoch on a small validation split cannot pick it; 1: that "
         "epoch's AUC alone", type=int)
    _opt(g, "--threshold", "threshold", "decision threshold stored with each checkpoint, chosen on validation: "
         "youden, fixed:P or sensitivity:S")

    g = p.add_argument_group("engine")
    _opt(g, "--track", "track", "numpy_nn (hand-written NumPy) or torch_ref (PyTorch)", choices=TRACKS)
    _opt(g, "--device", "device", "torch track only: cpu or cuda", choices=DEVICES)
    _opt(g, "--dtype", "dtype", "parameter and batch dtype", choices=DTYPES)
    g.add_argument("--lockstep", dest="lockstep", action="store_const", const=True, default=None,
                   help="torch track: start from the NumPy track's initial weights and draw dropout masks with "
                        "NumPy, so a run retraces --track numpy with the same seed (parity checks)")
    g.add_argument("--amp", dest="amp", action="store_const", const=True, default=None,
                   help="torch track on CUDA: mixed precision (float16 autocast, GradScaler); faster, outside the "
                        "lockstep parity of the two tracks")

    g = p.add_argument_group("model", validate.LIMITS_HELP)
    _opt(g, "--model", "model", "mlp (CheXVision-mini), cnn or densenet121 (torchvision's DenseNet-121)",
         choices=MODELS)
    _opt(g, "--pretrained", "pretrained", "densenet121 initial weights: imagenet (torch.hub; needs torch and "
         "internet), a .pth, or an .npz from `convert`; the classifier is replaced", metavar="imagenet|FILE")
    _opt(g, "--hidden", "hidden", "MLP hidden widths, comma-separated", metavar="W,W,...")
    _opt(g, "--channels", "channels", "CNN stage widths, comma-separated (at least two)", metavar="C,C,...")
    _opt(g, "--dropout", "dropout", "dropout probability (densenet121: drop_rate after every dense layer, 0 unless "
         "given)", type=float)

    g = p.add_argument_group("optimisation")
    _opt(g, "--epochs", "epochs", "training epochs", type=int)
    _opt(g, "--batch-size", "batch_size", "mini-batch size", type=int)
    _opt(g, "--optimizer", "optimizer", "optimizer", choices=OPTIMIZERS)
    _opt(g, "--lr", "lr", "peak learning rate", type=float, metavar="LR")
    _opt(g, "--momentum", "momentum", "SGD momentum", type=float)
    _opt(g, "--weight-decay", "weight_decay", "optimizer weight decay, weights only (biases exempt)", type=float)
    _opt(g, "--l1", "l1", "L1 penalty on weights, added to the loss", type=float)
    _opt(g, "--l2", "l2", "L2 penalty on weights, added to the loss", type=float)
    _opt(g, "--label-smoothing", "label_smoothing", "BCE label smoothing", type=float)
    _opt(g, "--pos-weight", "pos_weight", "loss weight of abnormal examples: a number or 'auto' (n_normal/n_abnormal; with --task "
         "findings one per finding from its training labels); none means 1", metavar="X|auto")
    _opt(g, "--scheduler", "scheduler", "cosine (linear warm-up, then cosine decay) or none", choices=SCHEDULERS)
    _opt(g, "--warmup-epochs", "warmup_epochs", "linear warm-up epochs", type=int)
    _opt(g, "--warmup-start-factor", "warmup_start_factor", "warm-up starts at lr times this", type=float)
    _opt(g, "--min-lr", "min_lr", "cosine floor", type=float)
    _opt(g, "--scheduler-interval", "scheduler_interval", "step the schedule once per epoch or per mini-batch",
         choices=SCHEDULER_INTERVALS)

    g = p.add_argument_group("augmentation (training batches only)")
    g.add_argument("--augment", dest="augment", action="store_const", const=True, default=None,
                   help=f"augment training batches (default: {'on' if DEFAULTS.augment else 'off'})")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False, help="no augmentation")
    g.add_argument("--flip", dest="flip", action="store_const", const=True, default=None,
                   help="random horizontal flips (default: off)")
    _opt(g, "--noise-std", "noise_std", "Gaussian pixel noise std, a fraction of the 0-255 range", type=float)
    _opt(g, "--brightness", "brightness", "largest brightness shift, a fraction of the 0-255 range", type=float)
    _opt(g, "--contrast", "contrast", "largest relative contrast change", type=float)


def _pos_weight(text: str):
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--pos-weight takes a number or 'auto', got {text!r}") from None


TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "seed"]


def config_from_args(args) -> TrainConfig:
    """TrainConfig from the options given (the rest from its defaults); ``--seed`` is the data's."""
    given = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k, None) is not None}
    # parsed here rather than by argparse, so a bad value is a one-line UserError like the others
    for name in ("hidden", "channels"):
        if name in given:
            given[name] = parse_hidden(given[name], "--" + name)
    if "pos_weight" in given:
        given["pos_weight"] = _pos_weight(given["pos_weight"])
    if given.get("model") == "densenet121":
        given.setdefault("dropout", 0.0)  # torchvision's drop_rate; the MLP's 0.3 after all 58 dense layers would hurt
    return TrainConfig(seed=args.seed, **given)
