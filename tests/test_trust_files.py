"""Issue 10 §1 and §6: nothing outside the run is deleted or overwritten; our stale temporaries go.

Each test is one reproduction from the issue: a user's files next to (or instead of) a run, an
``--overwrite`` that fails validation or fails mid-way, symlinked checkpoint folders, ``evaluate
--out`` / ``predict --out`` onto files the user owns.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision import outputs
from chexvision.cli import main
from tests.cli_checks import one_line_error

SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "64",
         "--hidden", "8", "--no-progress", "--no-augment", "--no-evaluate"]  # training only (as before train evaluated)
USER_FILES = {"REPORT.md": "mine\n", "metrics.json": "{}\n", "roc.png": "my plot", "confusion.png": "my plot",
              "val_scores.npy": "my scores", "test_scores.npy": "my scores", "test_labels.npy": "my labels"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); links are not followed."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
    return out


def user_folder(path: Path, names=tuple(USER_FILES)) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text(USER_FILES[name])
    return path


def train(out: Path, *extra: str, epochs: int = 1) -> int:
    return main(["train", *SMALL, "--epochs", str(epochs), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust_files") / "run"
    assert train(out, epochs=2) == 0
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, symlinks=True)
    return dest


# -- §1 train --out ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_train_refuses_a_folder_of_user_files(tmp_path, capsys, overwrite):
    d = user_folder(tmp_path / "d")
    before = snapshot(d)
    assert train(d, *(["--overwrite"] if overwrite else [])) == 2
    one_line_error(capsys, str(d), "not a chexvision run")
    assert snapshot(d) == before


def test_train_into_an_empty_folder_marks_it_as_a_run(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    assert train(d) == 0
    assert (d / outputs.MARKER).is_file() and outputs.is_run_dir(d)


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--dataset", "folder", "--data-dir", "EMPTY_CSV"],
                                 ["--hidden", "1000000000"]], ids=["seed", "empty-label-csv", "huge-hidden"])
def test_overwrite_validates_everything_before_touching_the_old_run(run, tmp_path, capsys, bad):
    old = copy_run(run, tmp_path / "old")
    (tmp_path / "labels.csv").write_text("")
    bad = [str(tmp_path / "labels.csv") if a == "EMPTY_CSV" else a for a in bad]
    before = snapshot(old)
    assert train(old, "--overwrite", *bad) == 2
    one_line_error(capsys)
    assert snapshot(old) == before


def test_overwrite_never_removes_a_best_folder_that_is_not_ours(tmp_path, capsys):
    d = tmp_path / "d"
    (d / "best").mkdir(parents=True)
    (d / "best" / "notes.txt").write_text("my notes")
    assert train(d, "--overwrite") == 2
    one_line_error(capsys, "not a chexvision run")
    assert (d / "best" / "notes.txt").read_text() == "my notes"


def test_overwrite_refuses_a_run_holding_user_files(run, tmp_path, capsys):
    old = copy_run(run, tmp_path / "old")
    (old / "my_notes.txt").write_text("keep me")
    before = snapshot(old)
    assert train(old, "--overwrite") == 2
    one_line_error(capsys, "my_notes.txt")
    assert snapshot(old) == before


def test_overwrite_restores_the_old_run_when_the_new_one_fails_before_its_first_checkpoint(
        run, tmp_path, capsys, monkeypatch):
    old = copy_run(run, tmp_path / "old")
    before = snapshot(old)

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    assert train(old, "--overwrite", "--seed", "3") == 1
    one_line_error(capsys, "no space left")
    assert snapshot(old) == before
    assert not list(tmp_path.glob(".old.replaced-*"))


def test_overwrite_deletes_the_old_run_only_after_the_first_checkpoint(run, tmp_path, monkeypatch):
    old = copy_run(run, tmp_path / "old")
    old_model = (old / "last" / ckpt.MODEL_FILE).read_bytes()
    seen = []
    real = ckpt.save_checkpoint

    def watching(path, **kw):
        asides = list(tmp_path.glob(".old.replaced-*"))
        seen.append(bool(asides) and (asides[0] / "last" / ckpt.MODEL_FILE).read_bytes() == old_model)
        real(path, **kw)

    monkeypatch.setattr(ckpt, "save_checkpoint", watching)
    assert train(old, "--overwrite", "--seed", "3") == 0
    assert seen[0] is True  # the old run was set aside, intact, while the first checkpoint was written
    assert not list(tmp_path.glob(".old.replaced-*"))
    assert len(json.loads((old / ckpt.HISTORY_FILE).read_text())) == 1


def test_overwrite_refuses_the_current_folder(run, tmp_path, capsys, monkeypatch):
    old = copy_run(run, tmp_path / "old")
    before = snapshot(old)
    monkeypatch.chdir(old)
    assert train(Path("."), "--overwrite") == 2
    one_line_error(capsys, "current folder")
    assert snapshot(old) == before


def test_a_kill_during_overwrite_is_undone_by_the_next_run(run, tmp_path, capsys):
    """The old run set aside, the new folder holding only its marker (killed before a checkpoint)."""
    aside = copy_run(run, tmp_path / f".old.replaced-{12345}")
    before = snapshot(aside)
    (tmp_path / "old").mkdir()
    outputs.write_marker(tmp_path / "old")
    assert train(tmp_path / "old") == 2  # it is the old run again, so a plain train is refused
    one_line_error(capsys, "already holds a run")
    assert snapshot(tmp_path / "old") == before and not aside.exists()


# -- §1 symlinked checkpoint folders ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["best", "last", "best.new", "last.new", "best.old", "last.old"])
@pytest.mark.parametrize("command", ["resume", "evaluate", "overwrite"])
def test_symlinked_checkpoint_folders_are_refused_and_their_targets_untouched(run, tmp_path, capsys, name, command):
    r = copy_run(run, tmp_path / "r")
    target = tmp_path / "elsewhere"
    if (r / name).exists():
        shutil.move(r / name, target)
    else:
        target.mkdir()
        (target / "precious.txt").write_text("do not touch")
    os.symlink(target, r / name)
    before_target = snapshot(target)
    args = {"resume": ["train", "--resume", str(r), "--no-progress"],
            "evaluate": ["evaluate", "--checkpoint", str(r), "--split", "val", "--n-boot", "10", "--no-progress"],
            "overwrite": ["train", *SMALL, "--epochs", "1", "--out", str(r), "--overwrite"]}[command]
    assert main(args) == 2
    one_line_error(capsys, "symbolic link")
    assert (r / name).is_symlink() and snapshot(target) == before_target


# -- §1 evaluate --out / predict --out ------------------------------------------------------------------------
def test_evaluate_out_never_deletes_or_overwrites_user_files(run, tmp_path, capsys):
    d = user_folder(tmp_path / "d")
    before = snapshot(d)
    ev = ["evaluate", "--checkpoint", str(run), "--out", str(d), "--split", "val", "--n-boot", "10", "--no-progress"]
    assert main(ev) == 2
    one_line_error(capsys, "not written by an earlier evaluation", "--force")
    assert snapshot(d) == before
    # --force replaces the same-named files, and still deletes nothing it did not write
    assert main([*ev, "--force"]) == 0
    capsys.readouterr()
    for name in ("test_scores.npy", "test_labels.npy"):
        assert (d / name).read_text() == USER_FILES[name]
    assert json.loads((d / "metrics.json").read_text())["schema"].startswith("chexvision.metrics/")


def test_evaluate_replaces_and_prunes_only_its_own_earlier_files(run, tmp_path, capsys):
    d = tmp_path / "d"
    ev = ["evaluate", "--checkpoint", str(run), "--out", str(d), "--n-boot", "10", "--no-progress"]
    assert main(ev) == 0  # test split: test_scores.npy written by us
    (d / "mine.txt").write_text("mine")
    assert main([*ev, "--split", "val"]) == 0  # no --force needed over our own files
    assert not (d / "test_scores.npy").exists()  # ours, listed by the earlier metrics.json: pruned
    assert (d / "mine.txt").read_text() == "mine"


def test_evaluate_out_an_existing_file_is_one_line(run, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(f), "--n-boot", "10"]) == 2
    one_line_error(capsys, "not a directory")
    assert f.read_text() == "mine"


def test_predict_out_refuses_a_user_file_and_a_file_as_folder(run, tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(img)
    mine = tmp_path / "mine.csv"
    mine.write_text("my,data\n")
    pr = ["predict", "--checkpoint", str(run), "--image", str(img)]
    assert main([*pr, "--out", str(mine)]) == 2
    one_line_error(capsys, "not written by chexvision", "--force")
    assert mine.read_text() == "my,data\n"
    assert main([*pr, "--out", str(mine / "x.csv")]) == 2
    one_line_error(capsys, "is a file, not a folder")
    ours = tmp_path / "ours.json"
    assert main([*pr, "--out", str(ours)]) == 0 and main([*pr, "--out", str(ours)]) == 0  # our own: replaced
    assert main([*pr, "--out", str(mine), "--force"]) == 0
    assert "p_abnormal" in mine.read_text()


# -- §6 stale temporary files -----------------------------------------------------------------------------------
def test_stale_history_tmp_is_removed_on_the_next_run(run, tmp_path, capsys):
    r = copy_run(run, tmp_path / "r")
    stale = [r / ".history.json.k2j4x9_q.tmp", r / ".metrics.json.abcdefgh.tmp"]
    for p in stale:
        p.write_text("half")
    mine = r / ".history.json.notes.txt"  # not a temporary name of ours
    mine.write_text("mine")
    assert main(["train", "--resume", str(r), "--no-progress"]) == 0
    assert not any(p.exists() for p in stale) and mine.exists()


def test_a_run_that_stopped_before_its_first_checkpoint_can_be_started_again(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    outputs.write_marker(d)  # what a run killed before its first checkpoint leaves
    (d / ".history.json.abcd1234.tmp").write_text("half")
    assert train(d) == 0
    assert (d / "last").is_dir() and not (d / ".history.json.abcd1234.tmp").exists()


def test_findings_evaluate_and_predict_out_follow_the_same_rules(tmp_path, capsys):
    """--task findings writes through its own report writer: the same ownership rules hold."""
    from PIL import Image

    r = tmp_path / "f"
    assert main(["train", *SMALL, "--task", "findings", "--epochs", "1", "--pos-weight", "auto", "--out", str(r)]) == 0
    d = user_folder(tmp_path / "d")
    before = snapshot(d)
    ev = ["evaluate", "--checkpoint", str(r), "--out", str(d), "--n-boot", "10", "--no-progress"]
    assert main(ev) == 2
    one_line_error(capsys, "--force")
    assert snapshot(d) == before
    e = tmp_path / "e"
    assert main([*ev[:4], str(e), *ev[5:]]) == 0 and main([*ev[:4], str(e), *ev[5:], "--split", "val"]) == 0
    assert not (e / "test_scores.npy").exists()  # ours, pruned; nothing else touched
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(img)
    for name in ("p.csv", "p.json"):
        pr = ["predict", "--checkpoint", str(r), "--image", str(img), "--out", str(tmp_path / name)]
        assert main(pr) == 0 and main(pr) == 0  # our own findings output is replaced without --force
