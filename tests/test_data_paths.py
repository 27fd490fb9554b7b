"""Issue 10 §3: reads and writes stay inside what the user named.

Every image path taken from a label file resolves (after symlinks) inside ``--data-dir``, else it
is left out with the reason "outside the data folder" and never opened; directory scans never
follow a symlinked folder out of the data folder nor loop; ``evaluate`` only reads a cache at a
path stored in a checkpoint and creates files only under ``--cache`` or the default ``./cache``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chexvision.cli import main
from chexvision.data import open_dataset
from chexvision.data.cache import REPORT, _decode_chunk
from chexvision.data.fake import CHEXPERT_COLUMNS, make_chexpert, make_folder, make_nih
from chexvision.data.listing import OUTSIDE, inside, scan_images
from chexvision.errors import UserError


def _report(cache: Path) -> dict[str, str]:
    with open(cache / REPORT, newline="") as f:
        return {r["path"]: r["reason"] for r in csv.DictReader(f)}


def _secret(tmp_path: Path) -> Path:
    """A real, decodable image outside the data folder: the old code cached it."""
    p = tmp_path / "secret" / "secret.jpg"
    p.parent.mkdir()
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(p)
    return p


def test_inside_resolves_dots_absolute_paths_and_symlinks(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "out").symlink_to(tmp_path)
    assert inside(tmp_path / "d", "a/x.png") and inside(tmp_path / "d", "a/../a/x.png")
    for bad in ("../x.png", "a/../../x.png", "/etc/passwd", "out/x.png", str(tmp_path / "x.png")):
        assert not inside(tmp_path / "d", bad), bad
    assert not inside(tmp_path / "d", tmp_path / "dd" / "x.png")  # a sibling sharing the prefix "d"


def test_chexpert_rows_leading_outside_are_skipped_and_never_decoded(tmp_path):
    secret = _secret(tmp_path)
    root = tmp_path / "data" / "deep" / "deeper"
    make_chexpert(root, n_train=30, n_valid=12)
    base = root / "CheXpert-v1.0-small"
    (base / "train" / "link.jpg").symlink_to(secret)
    escapes = [str(secret), "../../../../secret/secret.jpg", "CheXpert-v1.0-small/../../../../secret/secret.jpg",
               "../../../../../../../../../../../../etc/passwd", "CheXpert-v1.0-small/train/link.jpg"]
    cells = ["" for _ in CHEXPERT_COLUMNS[5:]]
    cells[CHEXPERT_COLUMNS[5:].index("No Finding")] = "1.0"
    with open(base / "train.csv", "a", newline="") as f:
        csv.writer(f).writerows([[p, "Male", 40, "Frontal", "PA", *cells] for p in escapes])
    cache = tmp_path / "cache"
    ds = open_dataset({"dataset": "chexpert", "data_dir": str(root), "cache": str(cache), "workers": 1},
                      progress=False, check_splits=False)
    report = _report(cache)
    for p in escapes:
        assert report.get(p) == OUTSIDE, (p, report.get(p))
    assert not any("secret" in p or "link" in p or "passwd" in p for p in ds.paths)
    assert ds.counts["outside"] == len(escapes)


def test_folder_csv_rows_leading_outside_are_skipped(tmp_path):
    secret = _secret(tmp_path)
    root = tmp_path / "data"
    make_folder(root, n=30, mode="csv")
    (root / "images" / "link.png").symlink_to(secret)
    escapes = [str(secret), "../secret/secret.jpg", "images/../../secret/secret.jpg", "../../../../../../../etc/passwd",
               "images/link.png"]
    with open(root / "labels.csv", "a", newline="") as f:
        csv.writer(f).writerows([[p, "normal", "intruder"] for p in escapes])
    cache = tmp_path / "cache"
    ds = open_dataset({"dataset": "folder", "data_dir": str(root), "cache": str(cache), "workers": 1}, progress=False, check_splits=False)
    report = _report(cache)
    assert all(report.get(p) == OUTSIDE for p in escapes), report
    assert "intruder" not in set(ds.patients) and len(ds) == 30
    assert "outside the data folder" in ds.describe()


def test_a_label_file_naming_only_outside_paths_is_one_error(tmp_path):
    secret = _secret(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text(f"path,label\n{secret},1\n../secret/secret.jpg,0\n")
    with pytest.raises(UserError, match="outside the data folder"):
        open_dataset({"dataset": "folder", "data_dir": str(tmp_path / "data"), "cache": str(tmp_path / "c")},
                     progress=False)
    assert not (tmp_path / "c").exists()


def test_nih_scan_never_leaves_the_data_folder_nor_loops(tmp_path):
    """A folder symlinked to / or to a sibling folder, a loop back to the root and a file
    symlinked elsewhere: nothing outside --data-dir is listed, matched by name or decoded."""
    root = tmp_path / "nih"
    info = make_nih(root, n=24, official_lists=False)
    outside = tmp_path / "outside" / "images"
    outside.mkdir(parents=True)
    moved, linked = info["paths"][0], info["paths"][1]
    (root / moved).rename(outside / Path(moved).name)  # listed, now only reachable through a link out
    (root / "images_009").symlink_to(outside.parent)
    (root / "images_001" / "rootlink").symlink_to("/")
    (root / "images_001" / "loop").symlink_to(root)
    os.replace(root / linked, outside / Path(linked).name)
    (root / linked).symlink_to(outside / Path(linked).name)  # a file in place, pointing out
    with open(info["label_file"], "a", newline="") as f:
        csv.writer(f).writerow(["../outside/images/x.png", "No Finding", 0, "999", 30, "M", "PA", 1, 1, 0.1, 0.1, ""])
    found = scan_images(root, (".png",))
    assert not any(p.startswith(("images_009", "images_001/rootlink", "images_001/loop")) for p in found), found
    cache = tmp_path / "cache"
    ds = open_dataset({"dataset": "nih", "data_dir": str(root), "cache": str(cache), "workers": 1}, progress=False, check_splits=False)
    report = _report(cache)
    assert Path(moved).name not in {Path(p).name for p in ds.paths}
    assert "not found" in report[Path(moved).name]
    assert report[linked] == OUTSIDE and report["../outside/images/x.png"] == OUTSIDE
    assert len(ds) == 22


def test_cache_worker_refuses_a_planned_path_leading_outside(tmp_path):
    secret = _secret(tmp_path)
    root = tmp_path / "data"
    make_folder(root, n=4, mode="csv")
    _, out, bad = _decode_chunk((0, 10, str(root), ["../secret/secret.jpg", str(secret), "images/img_0000.png"], 32))
    assert bad == [[10, OUTSIDE], [11, OUTSIDE]] and out[2].any()


# -- evaluate: a checkpoint's cache path is for reading only ------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalpaths")
    make_folder(tmp / "data", n=120, mode="csv", image_size=16)
    assert main(["train", "--dataset", "folder", "--data-dir", str(tmp / "data"), "--cache", str(tmp / "cache"),
                 "--workers", "1", "--image-size", "16", "--hidden", "8", "--epochs", "1", "--val-fraction", "0.25",
                 "--out", str(tmp / "run"), "--no-progress"]) == 0
    return tmp


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_evaluate_only_reads_the_saved_cache(small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(small_run / "cache")
    assert main(["evaluate", "--checkpoint", str(small_run / "run"), "--out", str(tmp_path / "ev"), "--n-boot", "10",
                 "--no-progress"]) == 0
    assert _snapshot(small_run / "cache") == before
    assert not (tmp_path / "cache").exists()  # the saved cache was complete: nothing built


def test_evaluate_never_creates_files_at_a_path_from_the_checkpoint(small_run, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run / "run", run, symlinks=True)
    evil = tmp_path / "evil" / "cache"
    for cfg_path in run.glob("*/config.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["data"]["cache"] = str(evil)
        cfg_path.write_text(json.dumps(cfg))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "ev"), "--n-boot", "10",
                 "--no-progress"]) == 0
    assert not (tmp_path / "evil").exists()
    built = list((cwd / "cache").iterdir())
    assert len(built) == 1 and (built[0] / "cache.json").is_file()  # the default cache folder instead
    # with --cache the user names the folder: it is built there
    assert main(["evaluate", "--checkpoint", str(run), "--cache", str(tmp_path / "mine"), "--out",
                 str(tmp_path / "ev2"), "--n-boot", "10", "--no-progress"]) == 0
    assert (tmp_path / "mine" / "cache.json").is_file() and not (tmp_path / "evil").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "ev" / "test_scores.npy"),
                                  np.load(tmp_path / "ev2" / "test_scores.npy"))
