"""What every dataset loader returns before any pixel is decoded, and the helpers they share.

A ``Listing`` is the list of images to cache: paths (relative to ``root``), 0/1 labels,
patient ids, the official test membership if the dataset has one, human-readable notes on where
the split comes from, and the problems met on the way (files listed but missing, files present
but unlisted, rows left out) which go to the cache's report file. Problems are counted and
reported, never fatal; only a listing with nothing usable in it is an error.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .splits import stratified_subset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom")
# The reason every reader gives for a path from a label file that leads out of --data-dir.
OUTSIDE = "outside the data folder"


@dataclass
class Listing:
    root: Path  # image i is root / paths[i]
    paths: list[str]  # POSIX-style, relative to root where possible
    labels: np.ndarray  # (N,) int64, 0 normal / 1 abnormal
    patients: np.ndarray  # (N,) str
    test_mask: np.ndarray | None  # (N,) bool official test rows, or None: no official split
    notes: list[str] = field(default_factory=list)  # where the split comes from, filters applied
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) for the report
    counts: dict[str, int] = field(default_factory=dict)  # e.g. {"missing": 3, "unlisted": 1}
    # --task findings: (N, K) int64 of 1 / 0 / -1 (masked), one column per name; None for binary
    findings: np.ndarray | None = None
    finding_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, rows: np.ndarray) -> Listing:
        rows = np.asarray(rows, dtype=np.int64)
        return Listing(
            self.root, [self.paths[i] for i in rows], self.labels[rows], self.patients[rows],
            None if self.test_mask is None else self.test_mask[rows], self.notes, self.problems, self.counts,
            None if self.findings is None else self.findings[rows], self.finding_names,
        )

    def groups(self) -> np.ndarray:
        """(N,) "test" / "trainval" for official splits, "all" otherwise."""
        if self.test_mask is None:
            return np.full(len(self), "all", dtype="<U8")
        return np.where(self.test_mask, "test", "trainval")


def inside(root, path) -> bool:
    """Whether ``path`` (after every symlink, ``..`` and absolute part) lies inside ``root``.

    ``root / "../x"``, ``root / "/etc/passwd"`` and a symlink under ``root`` to a file elsewhere
    are all outside. Nothing is opened: only ``realpath``'s ``lstat`` / ``readlink`` calls.
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(Path(root) / path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def file_problem(path) -> str | None:
    """None for a regular file (after symlinks), else why it is no image file: no such file, a
    folder, or not a regular file (a FIFO, a device, a socket), which is never opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a parent is not a folder)"
    except OSError as e:
        return f"cannot stat ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "special")
        return f"not a regular file ({kind})"
    return None


def confine(listing: Listing) -> Listing:
    """Leave out (and report as "outside the data folder") every image whose path resolves,
    after symlinks, outside ``listing.root``; a UserError if none is left."""
    keep = np.array([inside(listing.root, p) for p in listing.paths], dtype=bool)
    if keep.all():
        return listing
    out = listing.select(np.flatnonzero(keep))
    out.problems = listing.problems + [(listing.paths[i], OUTSIDE) for i in np.flatnonzero(~keep)]
    n_out = int((~keep).sum())
    out.counts = dict(listing.counts, outside=listing.counts.get("outside", 0) + n_out)
    out.notes = listing.notes + [f"{n_out:,} images whose path leads outside --data-dir left out (see the report)"]
    if not keep.any():
        raise UserError(f"--data-dir {listing.root}: every listed image lies {OUTSIDE} (after symlinks); "
                        "nothing is read from elsewhere")
    return out


def check_data_dir(data_dir) -> Path:
    if data_dir is None or str(data_dir) == "":
        raise UserError("--data-dir is required for this dataset")
    p = Path(data_dir).expanduser()
    if not p.exists():
        raise UserError(f"--data-dir {p}: no such file or folder")
    return p.resolve()


def find_file(root: Path, names: tuple[str, ...], max_depth: int = 2) -> list[Path]:
    """Files under ``root`` (at most ``max_depth`` folders down) whose name is in ``names``,
    shallowest first, then alphabetical."""
    found = []
    lowered = {n.lower() for n in names}
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        found += [Path(dirpath) / f for f in sorted(filenames) if f.lower() in lowered]
    return sorted(found, key=lambda p: (len(p.relative_to(root).parts), str(p)))


def scan_images(root: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS, within: Path | None = None) -> list[str]:
    """Every image file under ``root``, as sorted POSIX paths relative to ``root``.

    A symlinked folder is followed only if it resolves inside ``within`` (default ``root``: the
    data folder) and was not visited before, so a link to ``/`` or to a parent neither walks the
    file system nor loops. Hidden folders and files are skipped. Files that are symlinks are
    listed; ``confine`` later leaves out those that point outside.
    """
    out = []
    within = within if within is not None else root
    if not inside(within, root):
        return out
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            real = os.path.realpath(os.path.join(dirpath, d))
            if real in seen or not inside(within, real):  # a loop, a folder linked twice, or a way out
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        rel = Path(dirpath).relative_to(root)
        for f in filenames:
            if f.lower().endswith(extensions) and not f.startswith("."):
                out.append((rel / f).as_posix())
    out.sort()
    return out


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV (``.csv`` or ``.csv.gz``), header names stripped, BOM removed."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise UserError(f"{path}: cannot read as a CSV text file ({e})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise UserError(f"{path}: empty file, expected a CSV with a header row") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a valid CSV ({e})") from None
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as e:
        raise UserError(f"{path}: not a valid CSV ({e})") from None
    return header, rows


def column_index(header: list[str], path: Path, name: str, why: str = "") -> int:
    """Position of column ``name`` (exact after stripping, else case-insensitive) or a UserError."""
    if name in header:
        return header.index(name)
    low = [h.lower() for h in header]
    if name.lower() in low:
        return low.index(name.lower())
    shown = ", ".join(repr(h) for h in header if h) or "none"
    raise UserError(f"{path}: missing column {name!r}{why} (columns found: {shown})")


def apply_limit(listing: Listing, limit: int | None, seed: int) -> Listing:
    """A stratified subset of ``limit`` images: each (official group, label) keeps its share."""
    if limit is None or limit >= len(listing):
        return listing
    strata = np.char.add(np.char.add(listing.groups(), "/"), listing.labels.astype(str))
    rows = stratified_subset(strata, limit, np.random.default_rng([seed, 3]))
    out = listing.select(rows)
    out.notes = listing.notes + [f"--limit {limit}: a subset of {limit:,} of {len(listing):,} images, "
                                 "stratified by label and official split"]
    return out


def drop_test_patients_from_trainval(listing: Listing, test_name: str) -> Listing:
    """Leave out non-test images of patients who also have test images (no patient in two splits)."""
    if listing.test_mask is None:
        return listing
    test_patients = np.unique(listing.patients[listing.test_mask])
    clash = ~listing.test_mask & np.isin(listing.patients, test_patients)
    if not clash.any():
        return listing
    n_pat = len(np.unique(listing.patients[clash]))
    problems = listing.problems + [
        (listing.paths[i], f"patient {listing.patients[i]} also has images in {test_name}; left out of train/val")
        for i in np.flatnonzero(clash)
    ]
    out = listing.select(np.flatnonzero(~clash))
    out.problems = problems
    out.counts = dict(listing.counts, patient_overlap=int(clash.sum()))
    out.notes = listing.notes + [
        f"{int(clash.sum()):,} train/val images of {n_pat:,} patients who also appear in {test_name} were left out"
    ]
    return out
