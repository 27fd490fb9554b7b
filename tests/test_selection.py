"""Which epoch ``best/`` keeps: the validation AUC averaged over the last ``--select-window`` epochs.

Reproduction (issue 16, the real NIH sample): with 32 validation images, the MLP's validation AUC
jumped to 0.906 at epoch 6 while held-out patients scored 0.80 there; the raw-AUC rule kept epoch
6, the 3-epoch mean keeps epoch 14 (0.89 on those patients).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexvision.cli import main
from chexvision.config import TrainConfig
from chexvision.errors import UserError
from chexvision.train import selection_score

# validation AUCs per epoch of the MLP run quoted above (numpy track, seed 0, 32 validation images)
REAL_MLP_VAL_AUC = [0.776, 0.796, 0.839, 0.714, 0.843, 0.906, 0.784, 0.867, 0.827, 0.843, 0.878, 0.902, 0.890,
                    0.886, 0.882, 0.855]


def pick(val_aucs, window):
    """The epoch (1-based) Trainer keeps: the first strictly best selection score."""
    best, best_epoch, history = -np.inf, 0, []
    for epoch, auc in enumerate(val_aucs, 1):
        history.append({"val_auc": auc})
        score = selection_score(history, window)
        if score > best:
            best, best_epoch = score, epoch
    return best_epoch


def test_a_one_epoch_spike_no_longer_picks_the_checkpoint():
    assert pick(REAL_MLP_VAL_AUC, window=1) == 6  # the old rule: the spike
    assert pick(REAL_MLP_VAL_AUC, window=3) == 14  # the default: a stretch of good epochs
    assert TrainConfig().select_window == 3


def test_selection_score_is_the_mean_of_the_last_epochs():
    h = [{"val_auc": a} for a in (0.5, 0.9, 0.6, 0.7)]
    assert selection_score(h, 1) == 0.7
    assert selection_score(h, 3) == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert selection_score(h[:1], 3) == 0.5  # fewer epochs than the window at the start
    with pytest.raises(UserError, match="select-window"):
        TrainConfig(select_window=0)


def test_training_keeps_the_epoch_with_the_best_mean(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--synthetic-size", "600", "--image-size", "16", "--hidden", "16",
                 "--epochs", "5", "--select-window", "2", "--out", str(out), "--no-progress"]) == 0
    history = json.loads((out / "history.json").read_text())
    aucs = [h["val_auc"] for h in history]
    meta = json.loads((out / "best" / "meta.json").read_text())
    assert meta["epoch"] == pick(aucs, 2)
    assert json.loads((out / "best" / "config.json").read_text())["train"]["select_window"] == 2
