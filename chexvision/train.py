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

import math
import sys
import time
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import outputs, validate
from .config import (
    TrainConfig,
    parse_threshold,
)
from .data import Augmenter, BatchLoader, Standardizer, data_config, open_dataset
from .errors import UserError
from .tracks import describe, fit_standardizer, layout, make_engine, model_spec

# the command line (options, TrainConfig from them) lives in train_args.py; cli and resume use them as train.*
from .train_args import TRAIN_FIELDS, add_arguments, config_from_args  # noqa: F401

HELP = ("train the NumPy or the torch track, then evaluate the best checkpoint; writes OUT/best/, OUT/last/, "
        "OUT/history.json and the evaluation (metrics.json, scores, plots, REPORT.md)")

SCORE_BATCH = 256  # batch size for scoring (no gradients kept, so larger than training's)
LOSS_GROWTH = 100.0  # warn when an epoch's mean training loss exceeds this many times the first batch's


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
    from .evaluate import check_engine, open_data

    check_engine(cfg.track, cfg.device)  # e.g. --device cuda without CUDA: before any folder is made
    ds = open_data(data_cfg, progress=progress, opener=open_dataset)  # a failed open leaves no cache folder behind
    trainer = Trainer(cfg, data_cfg, ds, out, progress)
    replacement = outputs.Replacement(out, plan)  # the old run, if any, is moved aside (not deleted) here
    trainer.on_first_checkpoint = replacement.commit
    try:
        trainer.fit()
    except BaseException:
        replacement.rollback()  # no checkpoint written yet: the old run comes back
        raise
    return _evaluate_best(args, out, cfg, ds)


def _evaluate_best(args, out: Path, cfg: TrainConfig, ds) -> int:
    """The best checkpoint scored exactly as ``evaluate`` does (unless --no-evaluate)."""
    from .evaluate import evaluate_checkpoint

    if args.no_evaluate:
        print(f"Next: python -m chexvision evaluate --checkpoint {out}", flush=True)
    else:
        evaluate_checkpoint(out, track=cfg.track, device=cfg.device, ds=ds, command="train")
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
        from .model_card import small_validation_warning

        small = (small_validation_warning(int(self.y_val.sum()), int((self.y_val == 0).sum()))
                 if self.task.is_binary else None)
        if small:
            print(f"chexvision train: warning: {small}", flush=True)  # stdout: stderr is for errors
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
                  f"({cfg.threshold} on validation); {time.perf_counter() - t_start:.1f} s", flush=True)
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
        # the loss is what the optimizer minimises; weight decay acts inside the optimizer, not in it
        train = (f"train loss {record['train_loss']:.4f}" + (f" (data {record['train_data_loss']:.4f} + L1/L2 "
                 f"{record['train_reg_loss']:.2g})" if cfg.l1 or cfg.l2 else ""))
        print(f"epoch {epoch + 1:>3}/{cfg.epochs}  {train}  val loss {record['val_loss']:.4f}"
              f" acc {record['val_accuracy']:.3f} auc {record['val_auc']:.4f}"
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
