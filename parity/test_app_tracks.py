"""The whole application, numpy track vs torch track: the same run gives the same history.

``train --track numpy`` and ``train --track torch --lockstep`` from one seed, in float64: the
torch model starts from the numpy_nn model's weights (copied by ``torch_ref.exchange``), both
see the same batches and augmentations (the shared ``BatchLoader``), and both drop the same units
(``torch_ref.layers.use_numpy_masks`` with the same per-epoch generator). Every per-epoch number
and every final weight then agrees at the suite's float64 tolerance (measured: ~5e-16 relative
after a few dozen steps, so the default 1e-7 leaves room for other BLAS builds without hiding a real drift).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from parity.helpers import tol

RUN = ["--dataset", "synthetic", "--synthetic-size", "400", "--image-size", "16", "--hidden", "32,8",
       "--batch-size", "32", "--epochs", "3", "--dtype", "float64", "--dropout", "0.3", "--l1", "1e-4",
       "--l2", "1e-4", "--weight-decay", "1e-3", "--seed", "7", "--no-progress"]


VARIANTS = {
    "adam-epoch": ["--optimizer", "adam"],
    "sgd-step": ["--optimizer", "sgd", "--lr", "0.02", "--scheduler-interval", "step"],
    "rmsprop-auto-pos-weight": ["--optimizer", "rmsprop", "--lr", "3e-4", "--pos-weight", "auto"],
    "cnn-batchnorm": ["--model", "cnn", "--channels", "4,8"],  # conv, BatchNorm running stats, pooling
}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracks")
    runs = {}
    for track, extra in (("numpy", []), ("torch", ["--lockstep"])):
        runs[track] = root / track
        argv = ["train", *RUN, *VARIANTS[request.param], "--cache", str(root / "cache"), "--out", str(runs[track]),
                "--track", track, *extra]
        assert main(argv) == 0
    return runs


def test_history_matches(pair):
    a = json.loads((pair["numpy"] / "history.json").read_text())
    b = json.loads((pair["torch"] / "history.json").read_text())
    assert len(a) == len(b) == 3
    for ha, hb in zip(a, b):
        for key in ("lr", "train_loss", "train_data_loss", "train_reg_loss", "val_loss", "val_accuracy", "val_auc",
                    "threshold"):
            np.testing.assert_allclose(ha[key], hb[key], **tol(np.float64),
                                       err_msg=f"epoch {ha['epoch']} {key}")


def test_final_weights_match(pair):
    for name in ("best", "last"):
        wa = ckpt.read_npz(pair["numpy"] / name / ckpt.MODEL_FILE)
        wb = ckpt.read_npz(pair["torch"] / name / ckpt.MODEL_FILE)
        assert list(wa) == list(wb)
        for k in wa:
            assert wa[k].dtype == wb[k].dtype, f"{name} {k}: {wa[k].dtype} vs {wb[k].dtype}"
            if wa[k].dtype == np.int64:  # BatchNorm's num_batches_tracked
                np.testing.assert_array_equal(wa[k], wb[k], err_msg=f"{name} {k}")
            else:
                assert wa[k].dtype == np.float64
                np.testing.assert_allclose(wa[k], wb[k], **tol(np.float64), err_msg=f"{name} {k}")


def test_without_lockstep_the_torch_run_differs(tmp_path):
    """A control: the agreement above comes from the shared init and masks, not from chance."""
    for track in ("numpy", "torch"):
        assert main(["train", *RUN, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / track),
                     "--track", track]) == 0
    wa = ckpt.read_npz(tmp_path / "numpy" / "last" / ckpt.MODEL_FILE)
    wb = ckpt.read_npz(tmp_path / "torch" / "last" / ckpt.MODEL_FILE)
    assert not np.allclose(wa["layers.0.weight"], wb["layers.0.weight"], rtol=1e-3, atol=1e-4)
