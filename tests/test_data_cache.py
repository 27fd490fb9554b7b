"""The preprocessing cache: bad files reported, settings enforced, deterministic, resumable after a kill."""

from __future__ import annotations

import csv
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

from chexvision.data import load_image, open_dataset
from chexvision.data.cache import IMAGES, INDEX, MANIFEST, PROGRESS, REPORT
from chexvision.data.fake import make_folder, write_bad_files
from chexvision.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _cfg(data_dir, cache, **kw):
    return {"dataset": "folder", "data_dir": str(data_dir), "cache": str(cache), "workers": 1, **kw}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder dataset (CSV) of good images in several modes plus one bad file of each kind."""
    root = tmp_path_factory.mktemp("mixed")
    info = make_folder(root, n=40, mode="csv", image_size=96)
    rows = [[p, int(y), pt] for p, y, pt in zip(info["paths"], info["labels"], info["patients"])]
    g = np.asarray(Image.open(root / info["paths"][0]))
    extra = {
        "rgba.png": Image.fromarray(np.dstack([g, g, g, np.full_like(g, 255)]), "RGBA"),
        "sixteen.png": Image.fromarray(g.astype(np.uint16) * 257),
        "palette.png": Image.fromarray(g).convert("P"),
        "jpeg.jpg": Image.fromarray(g).convert("RGB"),
    }
    for name, im in extra.items():
        im.save(root / "images" / name)
        rows.append([f"images/{name}", 1, "extra"])
    bad = write_bad_files(root / "images")
    rows += [[f"images/{name}", 0, f"bad{i}"] for i, name in enumerate(bad)]
    rows.append(["images/listed_but_missing.png", 0, "ghost"])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "patient"]] + rows)
    return root, info, bad


@pytest.fixture(scope="module")
def mixed_cache(mixed, tmp_path_factory):
    root, _, _ = mixed
    cache = tmp_path_factory.mktemp("mixedcache") / "c"
    return cache, open_dataset(_cfg(root, cache, val_fraction=0.2), progress=False)


def test_bad_files_skipped_and_reported(mixed, mixed_cache):
    root, info, bad = mixed
    cache, ds = mixed_cache
    assert len(ds) == 40 + 4  # the good ones and the four odd-mode ones
    with open(cache / REPORT, newline="") as f:
        report = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    for name, keyword in bad.items():
        assert keyword in report[name], (name, report[name])
    assert "not found" in report["listed_but_missing.png"]
    assert ds.counts["bad"] == len(bad) and ds.counts["cached"] == 44
    assert "could not be decoded" in ds.describe()


def test_cache_rows_equal_load_image(mixed, mixed_cache):
    root, _, _ = mixed
    _, ds = mixed_cache
    assert isinstance(ds.images, np.memmap) and ds.images.dtype == np.uint8 and ds.images.shape[1:] == (64, 64)
    for i in range(len(ds)):
        assert np.array_equal(ds.images[i], load_image(root / ds.paths[i], 64)), ds.paths[i]
    first = load_image(root / ds.paths[0], 64).astype(float)
    g = np.asarray(Image.open(root / ds.paths[0]), float)
    stretched = (first - g.min()) * 255 / (g.max() - g.min())  # 16-bit: its own range maps onto 0..255
    for name, expect in (("rgba.png", first), ("palette.png", first), ("sixteen.png", stretched)):
        i = list(ds.paths).index(f"images/{name}")
        assert np.abs(ds.images[i] - expect).max() <= 2, name  # two roundings, 1.2x stretch


def test_index_and_manifest(mixed_cache):
    cache, ds = mixed_cache
    with open(cache / INDEX, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "patient", "split"] and len(rows) == len(ds) + 1
    assert [r[3] for r in rows[1:]] == list(ds.splits)
    m = json.loads((cache / MANIFEST).read_text())
    assert m["state"] == "complete" and m["settings"]["image_size"] == 64
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(
        [MANIFEST, IMAGES, INDEX, REPORT])  # work files are gone


def test_complete_cache_is_reused_without_the_sources(tmp_path, capsys):
    src = tmp_path / "src"
    make_folder(src, n=30, mode="csv")
    cfg = _cfg(src, tmp_path / "c", val_fraction=0.2)
    a = open_dataset(cfg, progress=True)
    capsys.readouterr()
    for p in (src / "images").iterdir():
        p.unlink()
    b = open_dataset(cfg, progress=True)  # nothing listed or decoded: the images are gone
    assert "nothing to decode" in capsys.readouterr().err
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images)) and np.array_equal(a.splits, b.splits)
    # another split seed needs no new cache
    c = open_dataset(dict(cfg, seed=5), progress=False)
    assert np.array_equal(c.labels, a.labels) and not np.array_equal(c.splits, a.splits)


def test_other_settings_are_refused(tmp_path):
    src = tmp_path / "src"
    make_folder(src, n=30, mode="csv")
    open_dataset(_cfg(src, tmp_path / "c", val_fraction=0.2), progress=False)
    with pytest.raises(UserError, match=r"other settings \(image_size: 64 in the cache, 32 asked"):
        open_dataset(_cfg(src, tmp_path / "c", val_fraction=0.2, image_size=32), progress=False)
    with pytest.raises(UserError, match="limit"):
        open_dataset(_cfg(src, tmp_path / "c", val_fraction=0.2, limit=20), progress=False)


def test_non_cache_folder_is_refused(tmp_path):
    src = tmp_path / "src"
    make_folder(src, n=10, mode="csv")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("do not overwrite")
    with pytest.raises(UserError, match="not empty and holds no cache.json"):
        open_dataset(_cfg(src, tmp_path / "c"), progress=False)


@pytest.fixture(scope="module")
def kill_data(tmp_path_factory):
    """160 distinct 512² noisy PNGs: slow enough to decode that a kill lands mid-run."""
    root = tmp_path_factory.mktemp("killdata")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    rows = [["path", "label", "patient"]]
    base = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    for i in range(160):
        a = base.copy()
        a[i:i + 40, 100:300] = 255 - i  # a distinct mark per image
        Image.fromarray(a).save(root / "images" / f"{i:03d}.png", compress_level=1)
        rows.append([f"images/{i:03d}.png", i % 2, f"p{i // 3}"])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    ref = open_dataset(_cfg(root, tmp_path_factory.mktemp("ref") / "c"), progress=False, chunk_size=8)
    return root, ref


def _cache_bytes(ds) -> tuple[bytes, bytes]:
    return (ds.cache_dir / IMAGES).read_bytes(), (ds.cache_dir / INDEX).read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_resume_after_real_kill_gives_the_same_cache(kill_data, tmp_path):
    root, ref = kill_data
    cache = tmp_path / "c"
    cmd = [sys.executable, "-m", "chexvision", "preprocess", "--dataset", "folder", "--data-dir", str(root),
           "--cache", str(cache), "--workers", "1", "--chunk-size", "8", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = cache / PROGRESS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    m = json.loads((cache / MANIFEST).read_text())
    n_done = log.read_bytes().count(b"\n")
    assert m["state"] == "building" and 3 <= n_done < 20
    with open(log, "ab") as f:
        f.write(b'{"chunk": 19, "ba')  # a torn line, as if killed mid-write: must be ignored
    ds = open_dataset(_cfg(root, cache), progress=False)
    assert _cache_bytes(ds) == _cache_bytes(ref)


def test_same_cache_with_two_processes_and_other_chunking(kill_data, tmp_path):
    root, ref = kill_data
    ds = open_dataset(dict(_cfg(root, tmp_path / "c"), workers=2), progress=False, chunk_size=16)
    assert _cache_bytes(ds) == _cache_bytes(ref)


def test_preprocess_cli_rerun_does_nothing(kill_data, tmp_path):
    root, ref = kill_data
    cmd = [sys.executable, "-m", "chexvision", "preprocess", "--dataset", "folder", "--data-dir", str(root),
           "--cache", str(ref.cache_dir)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert r.returncode == 0, r.stderr
    assert "nothing to decode" in r.stderr and "dataset folder: 160 images" in r.stdout
