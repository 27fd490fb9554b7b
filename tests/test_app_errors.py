"""Every bad input to train / evaluate / predict: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from tests.cli_checks import one_line_error

SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "32",
         "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    out = root / "run"
    assert main(["train", *SMALL, "--hidden", "16,8", "--cache", str(root / "cache"), "--out", str(out),
                 "--no-evaluate"]) == 0
    return out


@pytest.fixture(scope="module")
def good_png(run, tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)).save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bad_files(folder: Path, good_png: Path) -> dict[str, Path]:
    """name -> a file that must be refused."""
    folder.mkdir(exist_ok=True)
    files = {"missing": folder / "missing.png", "directory": folder / "adir.png"}
    files["directory"].mkdir(exist_ok=True)
    data = good_png.read_bytes()
    files["truncated"] = folder / "truncated.png"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["not-an-image"] = folder / "notes.png"
    files["not-an-image"].write_text("this is not a PNG\n")
    # a PNG header declaring 40000 × 40000 pixels (1.6 gigapixels): a decompression bomb
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
    bomb += _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _png_chunk(b"IEND", b"")
    files["bomb"] = folder / "bomb.png"
    files["bomb"].write_bytes(bomb)
    return files


@pytest.mark.parametrize("kind", ["missing", "directory", "truncated", "not-an-image", "bomb"])
def test_predict_one_bad_image(run, good_png, tmp_path, capsys, kind):
    path = bad_files(tmp_path / "bad", good_png)[kind]
    assert main(["predict", "--checkpoint", str(run), "--image", str(path)]) == 2
    one_line_error(capsys, str(path))


def test_predict_batch_scores_the_good_reports_the_bad(run, good_png, tmp_path, capsys):
    bad = bad_files(tmp_path / "bad", good_png)
    paths = [str(good_png), *map(str, bad.values()), str(good_png)]
    assert main(["predict", "--checkpoint", str(run), "--image", *paths, "--json"]) == 3  # some unreadable
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["path"] for r in rows if r["prediction"] != "unreadable"] == [str(good_png)] * 2
    unreadable = [r for r in rows if r["prediction"] == "unreadable"]
    assert [r["path"] for r in unreadable] == list(map(str, bad.values()))
    assert all(r["error"] and r["p_abnormal"] is None for r in unreadable)
    err = captured.err.strip().splitlines()
    assert len(err) == len(bad)
    for line, path in zip(err, bad.values()):
        assert str(path) in line and "Traceback" not in line


def test_predict_dir_errors(run, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(run), "--dir", str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "no such directory")
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(run), "--dir", str(tmp_path / "empty")]) == 2
    one_line_error(capsys, "no image files")


def test_predict_bad_out_suffix(run, good_png, capsys):
    assert main(["predict", "--checkpoint", str(run), "--image", str(good_png), "--out", "x.txt"]) == 2
    one_line_error(capsys, ".csv or .json")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_missing_or_foreign_checkpoint(tmp_path, good_png, capsys, command):
    extra = ["--image", str(good_png)] if command == "predict" else []
    assert main([command, "--checkpoint", str(tmp_path / "nowhere"), *extra]) == 2
    one_line_error(capsys, "no such checkpoint")
    (tmp_path / "empty").mkdir()
    assert main([command, "--checkpoint", str(tmp_path / "empty"), *extra]) == 2
    one_line_error(capsys, "not a chexvision checkpoint")


def test_corrupt_checkpoint_files(run, tmp_path, good_png, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    (bad / ckpt.CONFIG_FILE).write_text("{not json")
    assert main(["predict", "--checkpoint", str(bad), "--image", str(good_png)]) == 2
    one_line_error(capsys, "config.json", "not valid JSON")
    shutil.copy(run / "best" / ckpt.CONFIG_FILE, bad / ckpt.CONFIG_FILE)
    (bad / ckpt.MODEL_FILE).write_bytes(b"PK\x03\x04garbage")
    assert main(["predict", "--checkpoint", str(bad), "--image", str(good_png)]) == 2
    one_line_error(capsys, "model.npz", "unreadable")


@pytest.mark.parametrize("track", ["numpy", "torch"])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_mismatched_model_is_one_clear_line(run, tmp_path, good_png, capsys, track, command):
    """model.npz of a 16-8 MLP under a config that says 32-8."""
    bad = tmp_path / "mismatch"
    shutil.copytree(run / "best", bad)
    config = json.loads((bad / ckpt.CONFIG_FILE).read_text())
    config["model"]["hidden"] = [32, 8]
    (bad / ckpt.CONFIG_FILE).write_text(json.dumps(config))
    extra = ["--image", str(good_png)] if command == "predict" else []
    assert main([command, "--checkpoint", str(bad), "--track", track, *extra]) == 2
    one_line_error(capsys, "does not fit the model", "layers.0.weight (16, 256) vs (32, 256)")


def test_cuda_requested_but_unavailable(run, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", *SMALL, "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                 "--track", "torch", "--device", "cuda"]) == 2
    one_line_error(capsys, "CUDA is not available", "--device cpu")
    assert main(["evaluate", "--checkpoint", str(run), "--track", "torch", "--device", "cuda"]) == 2
    one_line_error(capsys, "CUDA is not available")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--device", "cuda"], "torch track only"),
        (["--lockstep"], "torch track only"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--dropout", "1.5"], "--dropout"),
        (["--hidden", "64,x"], "--hidden"),
        (["--threshold", "median"], "--threshold"),
        (["--pos-weight", "lots"], "--pos-weight"),
    ],
    ids=["numpy-cuda", "numpy-lockstep", "epochs", "lr", "dropout", "hidden", "threshold", "pos-weight"],
)
def test_bad_training_options(tmp_path, capsys, args, needle):
    assert main(["train", *SMALL, "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"), *args]) == 2
    one_line_error(capsys, needle)
    assert not (tmp_path / "o" / "last").exists()


def test_bad_evaluate_threshold(run, capsys):
    assert main(["evaluate", "--checkpoint", str(run), "--threshold", "sensitivity:1.5"]) == 2
    one_line_error(capsys, "--threshold")


def test_resume_without_a_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    one_line_error(capsys, "no last/ checkpoint")
