"""The preprocessing cache's names and small file helpers: its format and file names, what
``load`` returns (``CacheContents``), CSV / JSON writing (atomic), the manifest reader and the
folder lock. Moved unchanged out of ``chexvision/data/cache.py`` (see its docstring for the
layout), which re-exports every name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numpy_nn.serialization import atomic_write

from ..errors import UserError

FORMAT = "chexvision-cache"
VERSION = 1
# Bump when images.decode changes what it outputs: an old cache is then refused, not mixed.
DECODER = "pillow-gray8-draft2x-reduce2x-lanczos-v1"

MANIFEST, INDEX, IMAGES, REPORT = "cache.json", "index.csv", "images.npy", "bad_files.csv"
PLAN, PARTIAL, PROGRESS, PROBLEMS, LOCK = (
    "plan.csv", "images.partial.npy", "progress.jsonl", "listing_problems.csv", ".lock")


@dataclass
class CacheContents:
    images: np.ndarray  # (N, S, S) uint8 memmap
    paths: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64
    patients: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str, as written with manifest["split_settings"]
    manifest: dict
    findings: np.ndarray | None = None  # (N, K) int64 1 / 0 / -1 (--task findings), else None
    finding_names: tuple[str, ...] = ()


# -- small file helpers -------------------------------------------------------------------------

def _write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def read_manifest(cache_dir: Path) -> dict | None:
    p = Path(cache_dir) / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--cache {cache_dir}: {MANIFEST} is unreadable ({e}); delete the folder to rebuild") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise UserError(f"--cache {cache_dir}: {MANIFEST} is not a chexvision cache manifest")
    return m


class _Lock:
    """An exclusive advisory lock on the cache folder (POSIX), released when the process dies."""

    def __init__(self, cache_dir: Path):
        self.path = cache_dir / LOCK
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; concurrent builds are the user's risk
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise UserError(f"--cache {self.path.parent}: another chexvision process is building this cache") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
        return False
