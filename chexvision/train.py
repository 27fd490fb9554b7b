"""``python -m chexvision train``: train either track, keep the best and the last checkpoint, resume.

Each epoch: the training split is shuffled and cut into mini-batches (order and augmentation a
function of (seed, epoch) only), one optimizer step per batch; then the validation split is
scored for loss, accuracy at 0.5 and ROC-AUC. ``OUT/best/`` keeps the best validation AUC,
``OUT/last/`` the latest epoch with everything ``--resume OUT`` needs, ``OUT/history.json`` the
per-epoch record. A resumed run ends with exactly the weights and metrics of an uninterrupted one.

Learning rate: with ``--scheduler cosine`` (default) it rises linearly from lr × warmup_start_factor
to lr during ``--warmup-epochs`` (LinearLR), then follows a cosine down towards ``--min-lr``
(CosineAnnealingLR), the two chained by SequentialLR exactly as in torch. ``--scheduler-interval
epoch`` (default) steps the schedule after each epoch, so all batches of an epoch share one rate;
``step`` steps it after every mini-batch (the same curve, counted in batches, without plateaus).

History keys (one dict per epoch): ``epoch`` (1-based), ``lr`` (the rate used in the epoch's first
step), ``train_data_loss`` (BCE with smoothing / pos_weight, mean over examples),
``train_reg_loss`` (the L1/L2 penalty), ``train_loss`` (their sum), ``val_loss`` (plain BCE, no
smoothing), ``val_accuracy`` (at 0.5), ``val_auc``, ``threshold`` (chosen on validation),
``seconds``.

Divergence: a non-finite loss stops the run (one line; the last good checkpoint stays). A loss that
stays finite but runs away is warned about once, on stderr: the rule is an epoch's mean training
loss above ``LOSS_GROWTH`` (100) times the loss of the run's first mini-batch.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import outputs, validate
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
    parse_threshold,
)
from .data import Augmenter, BatchLoader, Standardizer, add_data_arguments, data_config, open_dataset
from .errors import UserError
from .tracks import describe, fit_standardizer, layout, make_engine, model_spec

HELP = "train the NumPy or the torch track; writes OUT/best/, OUT/last/ and OUT/history.json"

SCORE_BATCH = 256  # batch size for scoring (no gradients kept, so larger than training's)
LOSS_GROWTH = 100.0  # warn when an epoch's mean training loss exceeds this many times the first batch's


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


# -- the command -------------------------------------------------------------------------------------
def run(args) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    if args.resume:
        from .resume import resume

        return resume(args, progress)
    # everything is validated before anything is written: options, limits, --out, the data
    cfg = config_from_args(args)
    data_cfg = data_config(args)
    validate.check_data_limits(data_cfg)
    validate.check_model_size(model_spec(cfg.model, data_cfg["image_size"], cfg.hidden, cfg.dropout, cfg.channels),
                              cfg.batch_size)
    out = Path(args.out or Path("runs") / f"{data_cfg['dataset']}-{cfg.track}")
    plan = outputs.check_train_out(out, args.overwrite)
    ds = open_dataset(data_cfg, progress=progress)
    trainer = Trainer(cfg, data_cfg, ds, out, progress)
    replacement = outputs.Replacement(out, plan)  # the old run, if any, is moved aside (not deleted) here
    trainer.on_first_checkpoint = replacement.commit
    try:
        trainer.fit()
    except BaseException:
        replacement.rollback()  # no checkpoint written yet: the old run comes back
        raise
    return 0


# -- the loop -----------------------------------------------------------------------------------------
class Trainer:
    """One training run: data, engine, loop, checkpoints. ``fit()`` runs it to the end."""

    def __init__(self, cfg: TrainConfig, data_cfg: dict, ds, out: Path, progress: bool = False):
        self.cfg, self.data_cfg, self.ds, self.out, self.progress = cfg, data_cfg, ds, Path(out), progress
        self.train_idx, self.val_idx = ds.indices("train"), ds.indices("val")
        _check_splits(ds, self.train_idx, self.val_idx)
        self.task = ds.task  # binary: one output; findings: one per finding (chexvision.tasks)
        self.y_val = ds.labels[self.val_idx] if self.task.is_binary else ds.targets[self.val_idx]
        self.spec = model_spec(cfg.model, ds.image_size, cfg.hidden, cfg.dropout, cfg.channels,
                               out_features=self.task.n_outputs)
        self.layout = layout(self.spec)
        self.engine = make_engine(cfg.track, self.spec, cfg.dtype, cfg.device, cfg.lockstep)
        self.threshold_method, self.threshold_value = parse_threshold(cfg.threshold)
        self.config = {"format": ckpt.FORMAT, "train": cfg.to_dict(), "data": data_cfg, "model": self.spec,
                       "task": self.task.to_dict()}
        self.history: list[dict] = []
        self.best_auc, self.best_epoch, self.bad_epochs, self.stopped_early = -math.inf, 0, 0, False
        self.first_loss, self.warned_growth = None, False  # the loss-growth warning (see _check_growth)
        self.on_first_checkpoint = None  # called once, after the first last/ checkpoint is on disk

    # -- setup --------------------------------------------------------------------------------------
    def _loaders(self, standardizer):
        cfg = self.cfg
        aug = Augmenter(cfg.flip, cfg.noise_std, cfg.brightness, cfg.contrast) if cfg.augment else None
        dtype = np.dtype(cfg.dtype)
        train = BatchLoader(self.ds, self.train_idx, cfg.batch_size, standardizer, shuffle=True, augmenter=aug,
                            seed=cfg.seed, layout=self.layout, dtype=dtype, drop_last=False)
        val = BatchLoader(self.ds, self.val_idx, SCORE_BATCH, standardizer, shuffle=False, seed=cfg.seed,
                          layout=self.layout, dtype=dtype)
        return train, val

    def _pos_weight(self) -> float | list | None:
        pw = self.cfg.pos_weight
        if pw != "auto":
            return None if pw is None else float(pw)
        if not self.task.is_binary:  # per finding, from the unmasked training labels
            from .tasks import auto_pos_weight

            return auto_pos_weight(self.ds.targets[self.train_idx]).tolist()
        y = self.ds.labels[self.train_idx]
        return float((y == 0).sum() / max(int((y == 1).sum()), 1))

    # -- run ----------------------------------------------------------------------------------------
    def fit(self, resume_from: ckpt.Checkpoint | None = None) -> dict:
        cfg, engine = self.cfg, self.engine
        if resume_from is None:
            self.standardizer = fit_standardizer(self.spec, self.ds.images, self.train_idx)
        else:
            self.standardizer = Standardizer.from_arrays(resume_from.standardizer_arrays())
        self.train_loader, self.val_loader = self._loaders(self.standardizer)
        steps = len(self.train_loader)
        engine.build_model(cfg.seed)
        if cfg.pretrained is not None and resume_from is None:  # a resumed run restores its own weights
            engine.load_pretrained(cfg.pretrained)
        engine.setup_training(cfg, steps, self._pos_weight())
        start = 0
        if resume_from is not None:
            from .resume import restore

            start = restore(self, resume_from)
        print(f"chexvision train: {cfg.track} track, {describe(self.spec)}, {cfg.epochs} epochs, "
              f"{len(self.train_idx)} train / {len(self.val_idx)} val images -> {self.out}"
              + (f" (resumed after epoch {start})" if resume_from is not None else ""), flush=True)
        t_start = time.perf_counter()
        for epoch in range(start, cfg.epochs):
            if self.stopped_early:
                break
            self._epoch(epoch, steps)
        best = self.history[self.best_epoch - 1] if self.best_epoch else None
        if best is not None:
            thr = best["threshold"]
            thr = f"{thr:.4g}" if self.task.is_binary else "per finding " + ", ".join(f"{t:.3g}" for t in thr)
            print(f"best: epoch {self.best_epoch}, val {'macro ' if not self.task.is_binary else ''}AUC "
                  f"{best['val_auc']:.4f}, threshold {thr} "
                  f"({cfg.threshold} on validation); {time.perf_counter() - t_start:.1f} s. "
                  f"Next: python -m chexvision evaluate --checkpoint {self.out}", flush=True)
        return {"best_epoch": self.best_epoch, "best_val_auc": self.best_auc, "history": self.history}

    def _epoch(self, epoch: int, steps: int) -> None:
        cfg, engine = self.cfg, self.engine
        t0 = time.perf_counter()
        self.train_loader.set_epoch(epoch)
        engine.begin_epoch(cfg.seed, epoch)
        lr = engine.lr
        sums, n = np.zeros(2), 0
        batches = self.train_loader
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = batches = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                                 leave=False, file=sys.stderr)
        for step, (x, y) in enumerate(batches):
            with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is reported below, in one line
                data_loss, reg_loss = engine.train_step(x, y)
            if not (math.isfinite(data_loss) and math.isfinite(reg_loss)):
                self._diverged(epoch, step, steps, data_loss, reg_loss)
            if self.first_loss is None:
                self.first_loss = data_loss + reg_loss
            sums += (data_loss * len(y), reg_loss * len(y))
            n += len(y)
            if cfg.scheduler_interval == "step":
                engine.scheduler_step()
            if bar is not None and step % 10 == 0:
                bar.set_postfix(loss=f"{data_loss:.4f}")
        if bar is not None:
            bar.close()
        if cfg.scheduler_interval == "epoch":
            engine.scheduler_step()
        record = self._validate(epoch)
        record.update(lr=lr, train_data_loss=sums[0] / n, train_reg_loss=sums[1] / n, train_loss=sums.sum() / n)
        record["seconds"] = time.perf_counter() - t0
        self.history.append(_ordered(record))
        score = selection_score(self.history, cfg.select_window)
        improved = score > self.best_auc
        if improved:
            self.best_auc, self.best_epoch, self.bad_epochs = score, epoch + 1, 0
        else:
            self.bad_epochs += 1
        self.stopped_early = bool(cfg.patience and self.bad_epochs >= cfg.patience and epoch + 1 < cfg.epochs)
        self._save(record, improved)
        self._check_growth(epoch, record["train_loss"])
        print(f"epoch {epoch + 1:>3}/{cfg.epochs}  train {record['train_loss']:.4f} (reg {record['train_reg_loss']:.2g})"
              f"  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.3f} auc {record['val_auc']:.4f}"
              f"  lr {lr:.2e}  {record['seconds']:.1f}s" + ("  *best" if improved else ""), flush=True)
        if self.stopped_early:
            mean = f" (mean of the last {cfg.select_window} epochs)" if cfg.select_window > 1 else ""
            print(f"early stop: no better validation AUC{mean} for {cfg.patience} epochs", flush=True)

    def _validate(self, epoch: int) -> dict:
        from numpy_nn.layers import sigmoid
        from numpy_nn.losses import BCEWithLogitsLoss

        from .metrics import accuracy, roc_auc_score
        from .thresholds import choose_threshold

        with np.errstate(over="ignore", invalid="ignore"):
            logits = self.engine.logits(self.val_loader)  # (N_val,) float64
        if not np.all(np.isfinite(logits)):
            self._diverged(epoch, None, None, math.nan, 0.0)
        y = self.y_val
        if not self.task.is_binary:
            from .metrics_multilabel import validation_record

            return {"epoch": epoch + 1, **validation_record(y, logits, self.threshold_method, self.threshold_value,
                                                            self.task.outputs)}
        prob = sigmoid(logits)
        return {
            "epoch": epoch + 1,
            "val_loss": float(BCEWithLogitsLoss()(logits, y.astype(np.float64))),
            "val_accuracy": float(accuracy(y, (prob >= 0.5).astype(np.int64))),
            "val_auc": float(roc_auc_score(y, prob)),
            "threshold": float(choose_threshold(y, prob, self.threshold_method, self.threshold_value)),
        }

    def _diverged(self, epoch, step, steps, data_loss, reg_loss) -> None:
        where = f"epoch {epoch + 1}/{self.cfg.epochs}" + (f", step {step + 1}/{steps}" if step is not None else
                                                          " (validation scores)")
        what = f"loss {data_loss}" + (f" (regularisation {reg_loss})" if not math.isfinite(reg_loss) else "")
        kept = (f"the last good checkpoint (epoch {len(self.history)}) is kept in {self.out / ckpt.LAST}"
                if self.history else "no checkpoint was written")
        raise UserError(f"training diverged at {where}: {what} at lr {self.engine.lr:.3g}; {kept}. "
                        "Lower --lr (or raise --warmup-epochs)")

    def _check_growth(self, epoch: int, loss: float) -> None:
        """Warn (once, on stderr) when the epoch's mean training loss is more than ``LOSS_GROWTH``
        times the loss of the run's first mini-batch: the optimizer is running away even though
        every number is still finite (e.g. Adam at --lr 1e6 reaches losses of 1e15)."""
        ref = self.first_loss
        if self.warned_growth or ref is None or not ref > 0 or not loss > LOSS_GROWTH * ref:
            return
        self.warned_growth = True
        print(f"chexvision train: warning: the training loss grew from {ref:.3g} (first batch) to {loss:.3g} "
              f"(epoch {epoch + 1}), over {LOSS_GROWTH:.0f} times: training is diverging; lower --lr "
              f"(now {self.cfg.lr:g})", file=sys.stderr, flush=True)

    # -- checkpoints --------------------------------------------------------------------------------
    def _meta(self, record: dict, kind: str) -> dict:
        return {
            "kind": kind, "epoch": record["epoch"], "track": self.cfg.track,
            "val_auc": record["val_auc"], "val_loss": record["val_loss"], "val_accuracy": record["val_accuracy"],
            "threshold": {"value": record["threshold"], "method": self.threshold_method,
                          "method_value": self.threshold_value, "chosen_on": "val"},
        }

    def _save(self, record: dict, improved: bool) -> None:
        # best/ first, then last/: a kill between them resumes from the previous last/ and redoes
        # this epoch, rewriting best/ identically; the reverse order could lose a best epoch.
        common = {"model_state": self.engine.model_state(), "standardizer": self.standardizer.to_arrays(),
                  "config": self.config}
        if improved:
            ckpt.save_checkpoint(self.out / ckpt.BEST, meta=self._meta(record, ckpt.BEST), **common)
        tree, arrays = self.engine.training_state()
        state = {
            "epochs_done": record["epoch"], "history": self.history, "best_val_auc": self.best_auc,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "first_loss": self.first_loss, "warned_growth": self.warned_growth, "engine": tree,
        }
        ckpt.save_checkpoint(self.out / ckpt.LAST, meta=self._meta(record, ckpt.LAST), state=state,
                             state_arrays=arrays, **common)
        if self.on_first_checkpoint is not None:
            self.on_first_checkpoint()
            self.on_first_checkpoint = None
        ckpt.write_json(self.out / ckpt.HISTORY_FILE, self.history)

def selection_score(history: list[dict], window: int) -> float:
    """What picks ``best/``: the validation AUC averaged over the last ``window`` epochs (fewer at first).

    On a validation split of a few dozen images one epoch's AUC jumps by ±0.05 from noise alone; the
    mean of a few consecutive epochs favours a model that has been good for a while (measured on the
    real NIH sample, see the README). The weights kept are those of the window's last epoch.
    """
    recent = [h["val_auc"] for h in history[-window:]]
    return float(np.mean(recent))


def _check_splits(ds, train_idx, val_idx) -> None:
    if len(train_idx) == 0:
        raise UserError("the training split is empty; use more images or a smaller --val-fraction/--test-fraction")
    if len(val_idx) == 0:
        raise UserError("the validation split is empty; raise --val-fraction or use more images")
    for name, idx in (("training", train_idx), ("validation", val_idx)):
        n_pos = int(ds.labels[idx].sum())
        if n_pos in (0, len(idx)):
            only = "abnormal" if n_pos else "normal"
            raise UserError(f"the {name} split has only {only} images ({len(idx)}); the validation AUC needs both "
                            "classes in both splits (use more images or other split fractions)")


HISTORY_ORDER = ("epoch", "lr", "train_loss", "train_data_loss", "train_reg_loss", "val_loss", "val_accuracy",
                 "val_auc", "threshold", "seconds")


def _ordered(record: dict) -> dict:
    return {k: record[k] for k in HISTORY_ORDER}
