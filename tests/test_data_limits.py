"""Issue 10 §4-§6 and issue 11, data parts: bounded decode memory, --workers capped, arguments
checked before any work, a FIFO is not a regular file, a damaged cache index or a full disk is one
line, workers die with a SIGKILLed parent, and preprocess ends with a plain summary.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chexvision.cli import main
from chexvision.data import cache as cache_mod
from chexvision.data import load_image, open_dataset
from chexvision.data.cache import IMAGES, INDEX, PROGRESS
from chexvision.data.fake import make_folder, make_nih
from chexvision.data.images import DECODE_BUDGET, pixel_limit
from chexvision.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _cfg(data_dir, cache, **kw):
    return {"dataset": "folder", "data_dir": str(data_dir), "cache": str(cache), "workers": 1, **kw}


# -- §4 decode memory ---------------------------------------------------------------------------

def test_a_16bit_8192px_png_is_refused_from_its_header(tmp_path):
    """151 KB on disk, 1.75 GB and seconds per decode before: now refused before decoding."""
    p = tmp_path / "big16.png"
    Image.fromarray(np.zeros((8192, 8192), np.uint16)).save(p, optimize=True)
    assert p.stat().st_size < 1_000_000
    with pytest.raises(UserError, match=r"too large to decode: 8192x8192 I;16 .* limit of 22,369,621"):
        load_image(p, 64)


def test_limits_admit_real_radiographs():
    assert pixel_limit("I;16") >= 4096 * 4096 > 3000 * 3000  # 16-bit CR/DR up to 4,730²
    assert pixel_limit("L") == 8192 * 8192 and pixel_limit("RGB") >= 7000 * 7000
    assert pixel_limit("F") * 16 <= DECODE_BUDGET


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
def test_a_3000px_16bit_radiograph_decodes_within_its_budget(tmp_path):
    """A real-size 16-bit image decodes, and its decode grows the process by well under the 256
    MiB budget (the float64 copies of the old code took 224 MiB for this one)."""
    a = np.zeros((3000, 3000), np.uint16)
    a[::7] = 4095
    a[:, ::5] += 1000
    p = tmp_path / "r16.png"
    Image.fromarray(a).save(p, compress_level=1)
    code = ("import resource, sys\nfrom chexvision.data.images import decode\n"
            "b = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"x = decode({str(p)!r}, 64)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - b) / 1024, int(x.max()))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grew_mib, top = r.stdout.split()
    assert int(top) > 0 and float(grew_mib) < 150, r.stdout


# -- §4 workers and arguments ---------------------------------------------------------------------

def test_workers_are_capped_at_the_cpu_count(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("chexvision.data.dataset.available_cpus", lambda: 1)
    make_folder(tmp_path / "src", n=30, mode="csv")
    open_dataset(_cfg(tmp_path / "src", tmp_path / "c", workers=64), progress=True, chunk_size=4, check_splits=False)
    err = capsys.readouterr().err
    assert "--workers 64: only 1 CPU core available; using 1 process" in err
    assert "with 1 process" in err


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be from 0 to 4,294,967,295"),
    (["--chunk-size", "0"], "--chunk-size must be from 1"),
    (["--chunk-size", "1000000"], "--chunk-size must be from 1"),
    (["--val-fraction", "nan"], "--val-fraction must be between 0 and 1"),
    (["--image-size", "100000"], "--image-size must be an integer from 4 to 1024"),
    (["--workers", "0"], "--workers must be >= 1"),
], ids=lambda v: v[1] if isinstance(v, list) else None)
def test_preprocess_arguments_are_checked_before_any_work(tmp_path, capsys, args, message):
    make_folder(tmp_path / "src", n=10, mode="csv")
    argv = ["preprocess", "--dataset", "folder", "--data-dir", str(tmp_path / "src"), "--cache", str(tmp_path / "c")]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


# -- §5 special files, damaged index, full disk ---------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_not_a_regular_file_and_is_never_opened(tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)  # opening it for reading would block forever: the test would hang
    with pytest.raises(UserError, match=r"x.png: not a regular file \(a FIFO\)"):
        load_image(fifo)
    if os.path.exists("/dev/null"):
        with pytest.raises(UserError, match=r"not a regular file \(a device\)"):
            load_image("/dev/null")
    make_folder(tmp_path / "src", n=30, mode="csv")
    os.mkfifo(tmp_path / "src" / "images" / "pipe.png")
    with open(tmp_path / "src" / "labels.csv", "a") as f:
        f.write("images/pipe.png,normal,p\n")
    open_dataset(_cfg(tmp_path / "src", tmp_path / "c"), progress=False, check_splits=False)
    report = (tmp_path / "c" / "bad_files.csv").read_text()
    assert "images/pipe.png,listed in labels.csv: not a regular file (a FIFO)" in report


@pytest.mark.parametrize("label", ["abc", "7", ""])
def test_a_cache_index_with_a_bad_label_is_one_line(tmp_path, capsys, label):
    make_folder(tmp_path / "src", n=30, mode="csv")
    open_dataset(_cfg(tmp_path / "src", tmp_path / "c"), progress=False, check_splits=False)
    rows = list(csv.reader(open(tmp_path / "c" / INDEX, newline="")))
    rows[5][1] = label
    with open(tmp_path / "c" / INDEX, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert main(["preprocess", "--dataset", "folder", "--data-dir", str(tmp_path / "src"), "--cache",
                 str(tmp_path / "c"), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"index.csv row 6: label {label!r} is not 0 or 1" in err and "\n" not in err, err


@pytest.fixture(scope="module")
def disk_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("diskdata")
    make_folder(root, n=40, mode="csv")
    ref = open_dataset(_cfg(root, tmp_path_factory.mktemp("ref") / "c"), progress=False, chunk_size=4)
    return root, ref


def test_disk_full_while_preprocessing_is_one_line_and_resumes(disk_data, tmp_path, capsys, monkeypatch):
    root, ref = disk_data
    real, calls = cache_mod._write_rows, []

    def full_after_three(f, pos, arr):
        calls.append(pos)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, pos, arr)

    monkeypatch.setattr(cache_mod, "_write_rows", full_after_three)
    argv = ["preprocess", "--dataset", "folder", "--data-dir", str(root), "--cache", str(tmp_path / "c"),
            "--workers", "1", "--chunk-size", "4"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("chexvision preprocess: error: --cache") and "disk full" in err[-1]
    assert "run the same command again to resume" in err[-1] and "Traceback" not in "\n".join(err)
    assert (tmp_path / "c" / PROGRESS).read_bytes().count(b"\n") == 3
    monkeypatch.setattr(cache_mod, "_write_rows", real)
    assert main(argv) == 0
    assert "resuming, 12 of 40 images already done" in capsys.readouterr().err
    assert (tmp_path / "c" / IMAGES).read_bytes() == (ref.cache_dir / IMAGES).read_bytes()


# -- §6 workers die with their parent -------------------------------------------------------------

def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process tables from /proc (Linux)")
def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "src" / "images").mkdir(parents=True)
    rows = [["path", "label", "patient"]]
    for i in range(120):
        Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)).save(
            tmp_path / "src" / "images" / f"{i:03d}.png", compress_level=1)
        rows.append([f"images/{i:03d}.png", i % 2, f"p{i}"])
    with open(tmp_path / "src" / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    cmd = [sys.executable, "-m", "chexvision", "preprocess", "--dataset", "folder", "--data-dir",
           str(tmp_path / "src"), "--cache", str(tmp_path / "c"), "--workers", "2", "--chunk-size", "4", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, workers = tmp_path / "c" / PROGRESS, set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 1:
            workers = _children(proc.pid)
            if len(workers) >= 2:
                break
        time.sleep(0.01)
    assert proc.poll() is None and len(workers) >= 2, "the run ended before its workers could be seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60  # a bound, not a speed claim: they exit at once
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    left = [p for p in workers if _alive(p)]
    for p in left:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived the killed main process"
    assert json.loads((tmp_path / "c" / "cache.json").read_text())["state"] == "building"  # resumable


# -- issue 11: the summary ------------------------------------------------------------------------

def test_preprocess_says_plainly_that_most_listed_images_are_missing(tmp_path):
    info = make_nih(tmp_path / "nih", n=40, official_lists=False)
    for rel in info["paths"][2:]:
        (tmp_path / "nih" / rel).unlink()
    (tmp_path / "nih" / "images_001" / "images" / "stray.png").write_bytes(
        (tmp_path / "nih" / info["paths"][0]).read_bytes())
    (tmp_path / "nih" / "images_001" / "images" / "00000999_000.png").write_bytes(b"")
    with open(info["label_file"], "a", newline="") as f:
        csv.writer(f).writerow(["00000999_000.png", "No Finding", 0, "999", 30, "M", "PA", 1, 1, 0.1, 0.1, ""])
    r = subprocess.run([sys.executable, "-m", "chexvision", "preprocess", "--dataset", "nih", "--data-dir",
                        str(tmp_path / "nih"), "--cache", str(tmp_path / "c"), "--workers", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "decoded and cached                2" in out
    assert "listed in the labels             41" in out and "listed but missing               38" in out
    assert "skipped, unreadable               1  (1 empty file)" in out
    assert "on disk but unlisted              1" in out
    assert f"every left-out file and its reason: {tmp_path / 'c' / 'bad_files.csv'}" in out
    assert "warning: only 2 images of the 41 listed in the label file were cached: 38 listed images" in out
    assert "\r" not in r.stderr and "img/s" not in r.stderr  # no progress bar into a pipe


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "nih-sample").is_dir(),
                    reason="the real NIH sample (../shared/data/nih-sample) is not in this checkout")
def test_preprocess_the_real_nih_sample(tmp_path):
    src = REPO.parent / "shared" / "data" / "nih-sample"
    ds = open_dataset({"dataset": "nih", "data_dir": str(src), "cache": str(tmp_path / "c"), "workers": 2},
                      progress=False)
    assert len(ds) == 586 and ds.counts["missing"] == 0 and ds.counts.get("bad", 0) == 0
    assert int((ds.labels == 0).sum()) == 284 and int(ds.labels.sum()) == 302
    assert len(np.unique(ds.patients)) == 413
    for split in ("train", "val", "test"):  # patient-disjoint
        others = set(ds.patients[ds.splits != split])
        assert not others & set(ds.patients[ds.splits == split])
    i = int(np.flatnonzero(ds.paths == "images_001/images/00001299_000.png")[0])
    assert ds.labels[i] == 0 and ds.patients[i] == "1299"
    assert np.array_equal(ds.images[i], load_image(src / ds.paths[i], 64))
