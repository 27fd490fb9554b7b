"""Issue 10 §4 and §5: sizes checked before memory is allocated; every mistake or full disk is one line.

Exit status 2 for bad input (a hand-edited checkpoint, an absurd option), 1 for the environment
(disk full, permission denied); the previous checkpoint stays intact.
"""

from __future__ import annotations

import errno
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from chexvision import checkpoint as ckpt
from chexvision import validate
from chexvision.cli import main
from numpy_nn import serialization
from tests.cli_checks import one_line_error

SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "64",
         "--hidden", "8", "--no-progress", "--no-augment", "--no-evaluate"]  # training only (as before train evaluated)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust_limits") / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "good.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    return path


def unfinished_copy(run: Path, dest: Path, epochs: int = 3) -> Path:
    """A copy of ``run`` whose last/ config asks for more epochs, so ``--resume`` has work to do."""
    shutil.copytree(run, dest)
    path = dest / ckpt.LAST / ckpt.CONFIG_FILE
    cfg = json.loads(path.read_text())
    cfg["train"]["epochs"] = epochs
    path.write_text(json.dumps(cfg))
    return dest


def npy_header_only(shape, dtype=np.float64, payload: bytes = b"\0" * 64) -> bytes:
    """A .npy member that *declares* ``shape`` but carries only ``payload``."""
    buf = io.BytesIO()
    npy_format.write_array_header_2_0(buf, {"descr": npy_format.dtype_to_descr(np.dtype(dtype)),
                                            "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + payload


def guard_reads(monkeypatch, limit: int = 10**7) -> None:
    """Make reading any .npy member that declares more than ``limit`` values a test failure."""
    real = npy_format.read_array

    def guarded(fp, *a, **k):
        pos = fp.tell()
        version = npy_format.read_magic(fp)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape = read_header(fp)[0]
        fp.seek(pos)
        if int(np.prod(shape)) > limit:
            pytest.fail(f"array data of shape {shape} read before the headers were checked")
        return real(fp, *a, **k)

    monkeypatch.setattr(npy_format, "read_array", guarded)


# -- §4 npz headers before data ------------------------------------------------------------------------------
def test_npz_headers_are_read_without_the_data(tmp_path):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", npy_header_only((100_000, 100_000)))  # declares 80 GB
    assert serialization.npz_headers(path) == {"w": ((100_000, 100_000), np.dtype(np.float64))}
    seen = []
    with pytest.raises(RuntimeError):
        serialization.load(path, check=lambda h: (seen.append(h), (_ for _ in ()).throw(RuntimeError("refused"))))
    assert seen


@pytest.mark.parametrize("shape", [(100_000, 100_000), (8, 256, 1_000_000)])
def test_a_huge_member_in_model_npz_is_refused_before_reading(run, image, tmp_path, capsys, monkeypatch, shape):
    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    arrays = ckpt.read_npz(bad / ckpt.MODEL_FILE)
    with zipfile.ZipFile(bad / ckpt.MODEL_FILE, "w") as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(f"{k}.npy", buf.getvalue() if k != "layers.0.weight" else npy_header_only(shape))

    guard_reads(monkeypatch)
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    one_line_error(capsys, "model.npz", "does not fit the model", "layers.0.weight")


def test_a_huge_member_in_state_npz_is_refused_before_reading(run, tmp_path, capsys, monkeypatch):
    r = unfinished_copy(run, tmp_path / "r")
    path = r / ckpt.LAST / ckpt.STATE_NPZ
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("engine.huge.npy", npy_header_only((50_000, 50_000)))
    guard_reads(monkeypatch)
    assert main(["train", "--resume", str(r), "--no-progress"]) == 2
    one_line_error(capsys, "state.npz", "larger than any state")


# -- §4 sizes and counts up front ---------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--hidden", "1000000000"], "--hidden"),
    (["--hidden", "60000,60000"], "parameters"),
    (["--model", "cnn", "--channels", "100000,100000"], "--channels"),
    (["--model", "cnn", "--channels", "60000,60000"], "parameters"),
    (["--synthetic-size", "1000000000"], "--synthetic-size"),
    (["--synthetic-size", "150000", "--image-size", "256"], "--synthetic-size"),
    (["--epochs", "1000000000000"], "--epochs"),
    (["--batch-size", "100000000"], "--batch-size"),
    (["--image-size", "1024", "--batch-size", "4096"], "activation"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**40)], "--seed"),
    (["--lr", "inf"], "--lr"),
    (["--dropout", "nan"], "--dropout"),
], ids=["hidden-1e9", "hidden-params", "channels-1e5", "channels-params", "synthetic-1e9", "synthetic-bytes",
        "epochs-1e12", "batch-1e8", "activations", "seed-negative", "seed-huge", "lr-inf", "dropout-nan"])
def test_absurd_sizes_are_refused_before_any_work(tmp_path, capsys, monkeypatch, args, needle):
    from chexvision import train

    monkeypatch.setattr(train, "open_dataset", lambda *a, **k: pytest.fail("data opened before validation"))
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(tmp_path / "o"), *args]) == 2
    one_line_error(capsys, needle)
    assert not (tmp_path / "o").exists()


def test_limits_are_stated_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "100,000,000 parameters" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert f"{validate.MAX_N_BOOT:,}" in capsys.readouterr().out


def test_n_boot_is_checked_before_scoring(run, capsys, monkeypatch):
    from chexvision import evaluate

    monkeypatch.setattr(evaluate, "score_split", lambda *a, **k: pytest.fail("scored before --n-boot was checked"))
    for n in ("100000000", "0", "-5"):
        assert main(["evaluate", "--checkpoint", str(run), "--n-boot", n]) == 2
        one_line_error(capsys, "--n-boot")


# -- §5 hand-edited checkpoint files --------------------------------------------------------------------------
def _set(path: list, value):
    def edit(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return obj
    return edit


CONFIG_EDITS = {
    "model-null": _set(["model"], None),
    "hidden-string": _set(["model", "hidden"], "32"),
    "hidden-float": _set(["model", "hidden"], [32.7]),
    "hidden-negative": _set(["model", "hidden"], [-8]),
    "hidden-1e9": _set(["model", "hidden"], [10**9]),
    "dropout-5": _set(["model", "dropout"], 5),
    "no-kind": _set(["model", "kind"], KeyError),
    "image-size-string": _set(["model", "image_size"], "16"),
    "train-hidden-string": _set(["train", "hidden"], "32"),
    "train-epochs-1e12": _set(["train", "epochs"], 10**12),
    "train-dropout-5": _set(["train", "dropout"], 5.0),
    "train-null": _set(["train"], None),
    "data-list": _set(["data"], []),
    "synthetic-1e9": _set(["data", "synthetic_size"], 10**9),
    "data-image-size-string": _set(["data", "image_size"], "16"),
    "data-val-fraction-2": _set(["data", "val_fraction"], 2.0),
}


@pytest.mark.parametrize("edit", list(CONFIG_EDITS))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_hand_edited_config_json_is_one_line(run, image, tmp_path, capsys, command, edit):
    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    path = bad / ckpt.CONFIG_FILE
    path.write_text(json.dumps(CONFIG_EDITS[edit](json.loads(path.read_text()))))
    extra = ["--image", str(image)] if command == "predict" else ["--n-boot", "10"]
    assert main([command, "--checkpoint", str(bad), *extra]) == 2
    one_line_error(capsys, str(path))


@pytest.mark.parametrize("meta", [[1, 2], "best", {"threshold": "0.5"}, {"threshold": {"value": "0.5"}},
                                  {"epoch": "x", "threshold": {"value": 0.5}}],
                         ids=["list", "string", "threshold-string", "value-string", "epoch-string"])
def test_hand_edited_meta_json_is_one_line(run, image, tmp_path, capsys, meta):
    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    (bad / ckpt.META_FILE).write_text(json.dumps(meta))
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    one_line_error(capsys, "meta.json")


STATE_EDITS = {
    "epochs-done-string": _set(["epochs_done"], "x"),
    "epochs-done-huge": _set(["epochs_done"], 10**12),
    "history-null": _set(["history"], None),
    "stopped-early-string": _set(["stopped_early"], "no"),
    "no-engine": _set(["engine"], KeyError),
    "state-list": lambda s: [s],
}


@pytest.mark.parametrize("edit", list(STATE_EDITS))
def test_hand_edited_resume_state_is_one_line(run, tmp_path, capsys, edit):
    r = unfinished_copy(run, tmp_path / "r")
    path = r / ckpt.LAST / ckpt.STATE_JSON
    path.write_text(json.dumps(STATE_EDITS[edit](json.loads(path.read_text()))))
    before = (r / ckpt.LAST / ckpt.MODEL_FILE).read_bytes()
    assert main(["train", "--resume", str(r), "--no-progress"]) == 2
    one_line_error(capsys, "state.json")
    assert (r / ckpt.LAST / ckpt.MODEL_FILE).read_bytes() == before


@pytest.mark.parametrize("history", [{"a": 1}, [1, 2], [{"epoch": "x"}], [{"epoch": 1, "val_auc": "high"}]],
                         ids=["object", "numbers", "epoch-string", "auc-string"])
def test_hand_edited_history_json_is_one_line(run, tmp_path, capsys, history):
    r = tmp_path / "r"
    shutil.copytree(run, r)
    (r / ckpt.HISTORY_FILE).write_text(json.dumps(history))
    assert main(["evaluate", "--checkpoint", str(r), "--n-boot", "10", "--no-progress"]) == 2
    one_line_error(capsys, "history.json")


@pytest.mark.parametrize("file", [ckpt.CONFIG_FILE, ckpt.META_FILE, ckpt.MODEL_FILE])
def test_a_fifo_in_a_checkpoint_is_not_a_regular_file(run, image, tmp_path, capsys, file):
    import os

    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    (bad / file).unlink()
    os.mkfifo(bad / file)  # opening it for reading would block forever
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    err = one_line_error(capsys, file)
    assert "not a regular file" in err or "not a chexvision checkpoint" in err


def test_wrong_shaped_optimizer_arrays_are_one_line(run, tmp_path, capsys):
    r = unfinished_copy(run, tmp_path / "r")
    path = r / ckpt.LAST / ckpt.STATE_NPZ
    arrays = ckpt.read_npz(path)
    key = next(k for k, v in arrays.items() if v.ndim == 2)
    arrays[key] = np.zeros((3, 3), arrays[key].dtype)
    np.savez(path, **arrays)
    assert main(["train", "--resume", str(r), "--no-progress"]) == 2
    one_line_error(capsys, "state.npz", "(3, 3)")


def test_a_standardiser_of_another_size_is_one_line(run, image, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(run / "best", bad)
    np.savez(bad / ckpt.STANDARDIZER_FILE, mean=np.zeros((32, 32), np.float32), std=np.ones((32, 32), np.float32))
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    one_line_error(capsys, "standardizer.npz", "mean (32, 32) vs (16, 16)")


def test_resume_of_a_finished_run_says_only_that(run, capsys, monkeypatch):
    from chexvision import resume

    monkeypatch.setattr(resume, "open_dataset", lambda *a, **k: pytest.fail("data opened for a finished run"))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [captured.out.strip()]
    assert "already finished" in captured.out and captured.err == ""


# -- §5 the environment: exit 1, the previous checkpoint intact ----------------------------------------------------
@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied")])
def test_a_failing_checkpoint_write_is_one_line_and_keeps_the_last_checkpoint(run, tmp_path, capsys, monkeypatch,
                                                                               code, needle):
    """A full disk (or a permission lost) while epoch 3's checkpoint is written: exit 1, last/ of epoch 2 intact."""
    import os

    r = unfinished_copy(run, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in (r / ckpt.LAST).iterdir()}
    real_write = ckpt.write_npz

    def failing_write(path, arrays):
        def raise_it(f):
            raise OSError(code, os.strerror(code))
        serialization.atomic_write(path, raise_it)  # the real atomic_write: its temporary file is cleaned up

    monkeypatch.setattr(ckpt, "write_npz", failing_write)
    assert main(["train", "--resume", str(r), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert "model.npz" in err  # names the file it was writing
    monkeypatch.setattr(ckpt, "write_npz", real_write)
    after = {p.name: p.read_bytes() for p in (r / ckpt.LAST).iterdir()}
    assert after == before
    leftovers = [p.name for p in r.rglob("*") if p.name.endswith((".new", ".tmp"))]
    assert not leftovers
