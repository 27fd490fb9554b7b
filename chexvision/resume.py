"""``train --resume``: continue a run from its ``last/`` checkpoint, and the restore half of ``Trainer``.

A finished run says only that it is finished. The saved configuration, ``state.json`` and every
array of ``state.npz`` / ``model.npz`` are checked (types, shapes from the ``.npy`` headers before
reading, float dtypes, finite values, optimizer buffers of their parameter's shape) before use, so
a hand-edited or corrupt resume state is one line naming the file, never a traceback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import outputs, train, validate
from .config import TrainConfig
from .data import open_dataset, reopen_config
from .errors import UserError

RESUME_OVERRIDES = ("device",)


def resume(args, progress: bool) -> int:
    """``train --resume OUT``: continue from OUT/last/ with the saved configuration."""
    out = Path(args.resume)
    given = [k for k in train.TRAIN_FIELDS if getattr(args, k, None) is not None and k not in RESUME_OVERRIDES]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UserError(f"--resume continues {out} with its saved configuration; drop {flags} (only --device may "
                        "change) or start a new run with --out")
    if args.out and Path(args.out).resolve() != out.resolve():
        raise UserError(f"--resume {out} writes into {out}; drop --out {args.out}")
    ckpt.refuse_links(out / ckpt.LAST)
    if not (out / ckpt.LAST).exists() and not (out / f"{ckpt.LAST}.old").exists():
        raise UserError(f"--resume {out}: no {ckpt.LAST}/ checkpoint there to resume from")
    last = ckpt.load_checkpoint(out, prefer=ckpt.LAST)
    if last.dir.name != ckpt.LAST:
        raise UserError(f"--resume {out}: no {ckpt.LAST}/ checkpoint there to resume from")
    outputs.remove_stale_tmp(out)  # a kill during a write left these; they are ours
    cfg = TrainConfig.from_dict(last.train)
    state_path = last.dir / ckpt.STATE_JSON
    state = validate.check_resume_state(ckpt.read_json(state_path), str(state_path), cfg.epochs)
    if state["epochs_done"] >= cfg.epochs or state["stopped_early"]:
        how = "stopped early" if state["stopped_early"] else "all epochs done"
        print(f"chexvision train: {out} already finished ({state['epochs_done']} of {cfg.epochs} epochs, {how}); "
              "nothing to resume", flush=True)
        return 0
    if args.device is not None:
        cfg = dataclasses.replace(cfg, device=args.device)
    ds = open_dataset(reopen_config(last.data), progress=progress)  # saved paths: read-only hints
    train.Trainer(cfg, last.data, ds, out, progress).fit(resume_from=last)
    return 0


def restore(self, last: ckpt.Checkpoint) -> int:
    """Load ``last``'s weights and training state into ``trainer`` (named ``self``, it is Trainer's
    other half); returns the epochs done. Every array is checked before it is read or used."""
    expected = self.engine.model_state()
    state, arrays = last.training_state(max(int(np.size(v)) for v in expected.values()))
    self.engine.load_model_state(last.model_state(expected), source=str(last.dir / ckpt.MODEL_FILE))
    source = str(last.dir / ckpt.STATE_NPZ)
    try:
        tree = ckpt.unflatten_state(state["engine"], arrays)
        shapes = [tuple(getattr(p, "data", p).shape) for g in self.engine.optimizer.param_groups
                  for p in g["params"]]
        validate.check_optimizer_state(tree["optimizer"], shapes, source)
        self.engine.load_training_state(state["engine"], arrays)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise UserError(f"{source}: the saved optimizer/scheduler state does not fit this run ({e})") from None
    self.history = state["history"]
    self.best_auc, self.best_epoch = state["best_val_auc"], state["best_epoch"]
    self.bad_epochs, self.stopped_early = state["bad_epochs"], state["stopped_early"]
    self.first_loss, self.warned_growth = state.get("first_loss"), bool(state.get("warned_growth", False))
    if not validate.is_number(self.first_loss):
        self.first_loss = None
    return int(state["epochs_done"])
