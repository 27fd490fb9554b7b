"""train -> evaluate -> predict, end to end through ``chexvision.cli.main``, for both tracks.

Also: the synthetic task is really learned (test ROC-AUC >= 0.9), a checkpoint from either
track scores the same with the other, ``predict`` preprocesses exactly as training did, and one
image with the NumPy track needs no torch and well under a second.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main

ROOT = Path(__file__).resolve().parents[1]
# 2,000 synthetic 32×32 images (generated once per process), a 1024-64-16-1 MLP, 4 epochs: about a second
SMALL = ["--dataset", "synthetic", "--synthetic-size", "2000", "--image-size", "32", "--hidden", "64,16",
         "--batch-size", "64", "--lr", "3e-3", "--epochs", "4", "--no-progress"]
# float32 scores from two engines: different BLAS kernels, same weights
F32 = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    out = {}
    for track in ("numpy", "torch"):
        out[track] = root / track
        assert main(["train", *SMALL, "--cache", str(root / "cache"), "--out", str(out[track]), "--track", track,
                     "--no-evaluate"]) == 0
    return out


@pytest.fixture(scope="module")
def evaluated(runs):
    for run in runs.values():
        assert main(["evaluate", "--checkpoint", str(run), "--n-boot", "200", "--no-progress"]) == 0
    return runs


@pytest.fixture(scope="module")
def test_images(evaluated, tmp_path_factory):
    """The first 12 test-split images of the run's own data, written as PNG files."""
    from PIL import Image

    from chexvision.data import open_dataset

    config = json.loads((evaluated["numpy"] / "best" / ckpt.CONFIG_FILE).read_text())
    ds = open_dataset(config["data"], progress=False)
    idx = ds.indices("test")[:12]
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i, k in enumerate(idx):
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(ds.images[k]).save(paths[-1])
    return folder, paths, idx


ARTIFACTS = ("metrics.json", "REPORT.md", "val_scores.npy", "val_labels.npy", "test_scores.npy", "test_labels.npy",
             "loss_curve.png", "roc.png", "pr.png", "confusion.png")


@pytest.mark.parametrize("track", ["numpy", "torch"])
def test_evaluate_writes_every_artifact_and_the_task_is_learned(evaluated, track):
    run = evaluated[track]
    for name in ARTIFACTS:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold"]["chosen_on"] == "val"
    assert metrics["config"]["evaluated"]["track"] == "numpy"  # evaluate scores with NumPy unless told otherwise
    assert metrics["test"]["roc_auc"] >= 0.9, metrics["test"]["roc_auc"]  # the synthetic task is learned
    assert metrics["val"]["roc_auc"] >= 0.9
    assert metrics["test"]["accuracy"] > 0.75
    scores = np.load(run / "test_scores.npy")
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0.1
    labels = np.load(run / "test_labels.npy")
    assert set(np.unique(labels)) == {0, 1}


@pytest.mark.parametrize("trained, other", [("numpy", "torch"), ("torch", "numpy")])
def test_cross_track_evaluation_gives_the_same_scores(evaluated, tmp_path, trained, other):
    run = evaluated[trained]
    out = tmp_path / "cross"
    assert main(["evaluate", "--checkpoint", str(run), "--track", other, "--out", str(out), "--n-boot", "50",
                 "--no-progress"]) == 0
    for split in ("val", "test"):
        np.testing.assert_allclose(np.load(out / f"{split}_scores.npy"), np.load(run / f"{split}_scores.npy"), **F32,
                                   err_msg=split)
    assert json.loads((out / "metrics.json").read_text())["config"]["evaluated"]["track"] == other


@pytest.mark.parametrize("track", ["numpy", "torch"])
def test_predict_matches_evaluate_and_uses_the_evaluated_threshold(evaluated, test_images, track, capsys):
    run = evaluated["numpy"]
    folder, paths, idx = test_images
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), "--image", *map(str, paths), "--json", "--track", track]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    # the same preprocessing as training: PNG -> load_image -> saved standardizer -> the same score
    test_scores = np.load(run / "test_scores.npy")
    np.testing.assert_allclose([r["p_abnormal"] for r in rows], test_scores[: len(paths)], **F32)
    threshold = json.loads((run / "metrics.json").read_text())["threshold"]["value"]
    for r in rows:
        assert r["threshold"] == threshold
        assert r["label"] == int(r["p_abnormal"] >= threshold)
        assert r["prediction"] == ("abnormal" if r["label"] else "normal")


def test_predict_dir_writes_csv_and_json(evaluated, test_images, tmp_path, capsys):
    folder, paths, _ = test_images
    run = evaluated["torch"]
    for suffix in (".csv", ".json"):
        out = tmp_path / f"pred{suffix}"
        assert main(["predict", "--checkpoint", str(run), "--dir", str(folder), "--out", str(out)]) == 0
        if suffix == ".csv":
            with open(out, newline="") as f:
                rows = list(csv.DictReader(f))
            assert [Path(r["path"]).name for r in rows] == [p.name for p in paths]
            assert all(0.0 <= float(r["p_abnormal"]) <= 1.0 for r in rows)
        else:
            rows = json.loads(out.read_text())
            assert len(rows) == len(paths)
    text = capsys.readouterr().out
    assert "threshold" in text and "metrics.json" in text


def test_predict_without_evaluation_uses_the_training_threshold(runs, test_images, tmp_path, capsys):
    import shutil

    alone = tmp_path / "alone"
    shutil.copytree(runs["numpy"] / "best", alone)  # a bare checkpoint folder: no metrics.json next to it
    meta = json.loads((alone / ckpt.META_FILE).read_text())
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(alone), "--image", str(test_images[1][0]), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["threshold"] == meta["threshold"]["value"]


def test_predict_one_image_numpy_without_torch(evaluated, test_images):
    image = test_images[1][0]
    code = (
        "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
        "from chexvision.cli import main\n"
        f"rc = main(['predict', '--checkpoint', {str(evaluated['numpy'])!r}, '--image', {str(image)!r}])\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert str(image) in res.stdout


def test_evaluate_a_run_and_cache_moved_to_another_machine(tmp_path):
    """Train on a folder dataset, move run and cache elsewhere, delete the images: evaluate
    still reopens the same split from the moved cache and gives the same scores (README, "Train on Kaggle")."""
    import shutil

    from PIL import Image

    from chexvision.data.synthetic import make_synthetic

    images, labels, _, _ = make_synthetic(400, 16, seed=3)
    data = tmp_path / "data"
    for i, (im, y) in enumerate(zip(images, labels)):
        folder = data / ("abnormal" if y else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    away = tmp_path / "kaggle"
    assert main(["train", "--dataset", "folder", "--data-dir", str(data), "--cache", str(away / "cache"),
                 "--workers", "1", "--image-size", "16", "--hidden", "16", "--epochs", "2", "--out",
                 str(away / "run"), "--no-progress", "--no-evaluate"]) == 0
    before = tmp_path / "before"
    assert main(["evaluate", "--checkpoint", str(away / "run"), "--out", str(before), "--n-boot", "20",
                 "--no-progress"]) == 0
    home = tmp_path / "home"
    shutil.move(away, home)
    shutil.rmtree(data)
    after = tmp_path / "after"
    assert main(["evaluate", "--checkpoint", str(home / "run"), "--cache", str(home / "cache"), "--out", str(after),
                 "--track", "torch", "--n-boot", "20", "--no-progress"]) == 0
    for split in ("val", "test"):
        np.testing.assert_array_equal(np.load(after / f"{split}_labels.npy"), np.load(before / f"{split}_labels.npy"))
        np.testing.assert_allclose(np.load(after / f"{split}_scores.npy"), np.load(before / f"{split}_scores.npy"),
                                   **F32)


def test_cnn_checkpoint_predicts_alike_with_both_tracks(tmp_path, capsys):
    """The CNN path (NCHW batches, BatchNorm buffers in the checkpoint) through train and predict."""
    from PIL import Image

    run = tmp_path / "cnn"
    assert main(["train", "--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--model", "cnn",
                 "--channels", "4,8", "--epochs", "1", "--out", str(run), "--no-progress", "--no-evaluate"]) == 0
    assert "features.1.running_mean" in ckpt.read_npz(run / "best" / ckpt.MODEL_FILE)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24), dtype=np.uint8)).save(image)
    probs = {}
    for track in ("numpy", "torch"):
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(run), "--image", str(image), "--json", "--track", track]) == 0
        probs[track] = json.loads(capsys.readouterr().out)[0]["p_abnormal"]
    np.testing.assert_allclose(probs["numpy"], probs["torch"], **F32)
