"""The preprocessing cache: every image decoded once into one memory-mapped uint8 ``.npy``.

A cache is a folder::

    cache.json       settings that made it, state, counts, notes (the manifest)
    images.npy       (N, S, S) uint8, opened with mmap_mode="r": training reads batches from it
    index.csv        path,label,patient,split for row i of images.npy (--task findings: then one
                     column per finding, 1 / 0 / -1 for uncertain or masked)
    bad_files.csv    path,reason for every file left out: undecodable, missing, unlisted, ...

and, while it is being built, ``plan.csv`` (the rows to decode), ``images.partial.npy`` (rows
written in place, bad ones left zero) and ``progress.jsonl`` (one line per finished chunk).

**Settings.** The manifest records everything that decides the cached pixels and rows (dataset,
data folder, image size, filters, limit, decoder version). Opening a cache with different ones
is refused with a message naming them; splits are not among them, they are recomputed on open in
a fraction of a second, so trying another split seed never re-decodes 45 GB.

**Resumable.** The plan is fixed before the first pixel; chunks of rows are decoded in parallel
(one process per worker, each running ``images.decode``) and written in place by the main
process, which then fsyncs the data and appends the chunk to ``progress.jsonl``. A killed run
resumes with the chunks not in the log; decoding is deterministic, so the result is the same
byte for byte. A re-run of a complete cache decodes nothing.

**Bad files** (truncated, empty, not an image, decompression bombs, paths leading outside the
data folder) are skipped and reported with the reason; the cache holds only good images (rows
are compacted when the build ends).

**Failures.** A full disk (or no permission) is one line and exit status 1; what was decoded is
kept and the same command resumes. Worker processes exit as soon as the main process dies, even
by SIGKILL (``PR_SET_PDEATHSIG`` on Linux, and everywhere a thread waiting on the parent's
sentinel), so a killed run leaves no process behind.

The names and file helpers are in ``cache_files.py``, what the worker processes run in
``cache_worker.py``; this module re-exports them.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EnvironmentFailure, UserError
from .cache_files import (  # noqa: F401 - re-exported: the cache's names, as before the split
    DECODER,
    FORMAT,
    IMAGES,
    INDEX,
    LOCK,
    MANIFEST,
    PARTIAL,
    PLAN,
    PROBLEMS,
    PROGRESS,
    REPORT,
    VERSION,
    CacheContents,
    _Lock,
    _read_csv,
    _write_csv,
    _write_json,
    read_manifest,
)
from .cache_worker import _decode_chunk, _exit_with_parent, _read_progress, _worker_init, reason_kind  # noqa: F401
from .listing import Listing
from .splits import assign_splits

# -- building -----------------------------------------------------------------------------------

def _plan(cache_dir: Path, settings: dict, split_settings: dict, listing: Listing, chunk_size: int) -> dict:
    """Fix the rows to decode and create the empty image file. Restartable: a kill before the
    manifest says "building" makes the next run plan again from scratch."""
    manifest = {"format": FORMAT, "version": VERSION, "settings": settings, "state": "planning"}
    _write_json(cache_dir / MANIFEST, manifest)
    groups = listing.groups()
    names = list(listing.finding_names) if listing.findings is not None else []
    cols = [listing.paths, listing.labels.tolist(), listing.patients.tolist(), groups.tolist()]
    _write_csv(cache_dir / PLAN, ["path", "label", "patient", "group", *names],
               (list(r[:4]) + list(r[4]) for r in zip(*cols, listing.findings.tolist())) if names else zip(*cols))
    _write_csv(cache_dir / PROBLEMS, ["path", "reason"], listing.problems)
    for stale in (PROGRESS, IMAGES, INDEX, REPORT):
        (cache_dir / stale).unlink(missing_ok=True)
    s = settings["image_size"]
    mm = np.lib.format.open_memmap(cache_dir / PARTIAL, mode="w+", dtype=np.uint8, shape=(len(listing), s, s))
    del mm  # a sparse file of zeros; rows are written in place by _decode_all
    manifest.update(
        state="building", n_planned=len(listing), chunk_size=chunk_size, image_size=s, root=str(listing.root),
        split_source="patient" if listing.test_mask is None else "official", split_settings=split_settings,
        notes=listing.notes, counts=dict(listing.counts), created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    _write_json(cache_dir / MANIFEST, manifest)
    return manifest


def _decode_all(cache_dir: Path, manifest: dict, workers: int, progress: bool, log) -> dict[int, list]:
    header, plan = _read_csv(cache_dir / PLAN)
    root = Path(manifest["root"])
    n, size, cs = manifest["n_planned"], manifest["image_size"], manifest["chunk_size"]
    n_chunks = math.ceil(n / cs)
    done = _read_progress(cache_dir / PROGRESS)
    todo = [c for c in range(n_chunks) if c not in done]
    if not todo:
        return done
    n_done = sum(min(cs, n - c * cs) for c in done)
    workers = max(1, min(workers, len(todo)))
    log(f"cache {cache_dir}: " + (f"resuming, {n_done:,} of {n:,} images already done; " if done else "")
        + f"decoding {n - n_done:,} image{'s' if n - n_done != 1 else ''} with {workers} "
        f"process{'es' if workers > 1 else ''}")
    tasks = ((c, c * cs, str(root), [r[0] for r in plan[c * cs:(c + 1) * cs]], size) for c in todo)

    from tqdm import tqdm

    offset = np.load(cache_dir / PARTIAL, mmap_mode="r").offset
    row_bytes = size * size
    with open(cache_dir / PARTIAL, "r+b") as data, open(cache_dir / PROGRESS, "ab") as plog, \
            tqdm(total=n, initial=n_done, unit="img", desc="preprocess", disable=not (progress and _is_tty()),
                 mininterval=0.5, smoothing=0.05, file=sys.stderr) as bar:

        def commit(result):
            c, arr, bad = result
            _write_rows(data, offset + c * cs * row_bytes, arr)  # on disk before the log says so
            plog.write(json.dumps({"chunk": c, "bad": bad}).encode() + b"\n")
            plog.flush()
            os.fsync(plog.fileno())
            done[c] = bad
            bar.update(len(arr))

        if workers == 1:
            for t in tasks:
                commit(_decode_chunk(t))
            return done
        import multiprocessing as mp

        # spawn: the same behaviour on Linux, macOS and Windows, and no fork of a threaded parent
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            pending = set()
            try:
                for t in tasks:
                    pending.add(pool.submit(_decode_chunk, t))
                    if len(pending) >= 2 * workers:  # bounded in flight: memory stays flat
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            commit(f.result())
                for f in pending:
                    commit(f.result())
            except BrokenProcessPool:
                raise UserError(f"a worker process died while decoding (out of memory?); progress is saved in "
                                f"{cache_dir}, run the same command again to resume") from None
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    return done


def _is_tty() -> bool:
    """A progress bar only on a terminal: in a log file or a pipe it is noise."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _write_rows(f, pos: int, arr: np.ndarray) -> None:
    """Write decoded rows at byte ``pos`` of the open image file and fsync them."""
    f.seek(pos)
    f.write(arr.tobytes())
    f.flush()
    os.fsync(f.fileno())


def _finalize(cache_dir: Path, manifest: dict, done: dict[int, list], log) -> dict:
    plan_header, plan = _read_csv(cache_dir / PLAN)
    finding_names = plan_header[4:]
    n, size = manifest["n_planned"], manifest["image_size"]
    bad = {int(row): reason for chunk in done.values() for row, reason in chunk}
    good = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
    root = Path(manifest["root"])
    _, problems = _read_csv(cache_dir / PROBLEMS)
    report = problems + [[plan[i][0], reason] for i, reason in sorted(bad.items())]
    _write_csv(cache_dir / REPORT, ["path", "reason"], report)
    if len(good) == 0:
        raise UserError(f"none of the {n:,} images under {root} could be decoded; reasons in {cache_dir / REPORT}")
    partial, final = cache_dir / PARTIAL, cache_dir / IMAGES
    if partial.exists():
        if not bad:
            os.replace(partial, final)
        else:
            src = np.load(partial, mmap_mode="r")
            tmp = cache_dir / (IMAGES + ".tmp")
            try:
                dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(good), size, size))
                for a in range(0, len(good), 4096):
                    dst[a:a + 4096] = src[good[a:a + 4096]]
                dst.flush()
                del dst, src
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)  # the partial file and the log stay: a re-run finishes
                raise
    labels = np.array([int(plan[i][1]) for i in good], np.int64)
    patients = np.array([plan[i][2] for i in good], dtype=str)
    groups = np.array([plan[i][3] for i in good], dtype=str)
    ss = manifest["split_settings"]
    test_mask = None if manifest["split_source"] == "patient" else groups == "test"
    splits = assign_splits(labels, patients, test_mask, ss["val_fraction"], ss["test_fraction"], ss["seed"])
    _write_csv(cache_dir / INDEX, ["path", "label", "patient", "split", *finding_names],
               ([plan[i][0], plan[i][1], plan[i][2], s, *plan[i][4:]] for i, s in zip(good, splits)))
    manifest = dict(manifest, state="complete", completed=time.strftime("%Y-%m-%d %H:%M:%S"),
                    counts=dict(manifest["counts"], bad=len(bad), cached=len(good)),
                    bad_reasons=dict(Counter(reason_kind(r) for r in bad.values()).most_common()),
                    report_rows=len(report))
    _write_json(cache_dir / MANIFEST, manifest)
    for work in (PLAN, PROGRESS, PROBLEMS, PARTIAL):
        (cache_dir / work).unlink(missing_ok=True)
    log(f"cache {cache_dir}: complete, {len(good):,} image{'s' if len(good) != 1 else ''}"
        + (f", {len(bad):,} bad files skipped (see {REPORT})" if bad else ""))
    return manifest


# -- the entry point ----------------------------------------------------------------------------

def _differences(made: dict, asked: dict) -> list[str]:
    keys = sorted(set(made) | set(asked))
    return [f"{k}: {made.get(k)!r} in the cache, {asked.get(k)!r} asked" for k in keys if made.get(k) != asked.get(k)]


def default_chunk_size(n: int, workers: int) -> int:
    """~8 chunks per worker for small runs, at most 256 images per chunk (a resume loses < 256)."""
    return int(min(256, max(16, math.ceil(n / (8 * max(1, workers))))))


def prepare(
    cache_dir,
    settings: dict,
    make_listing: Callable[[], Listing],
    split_settings: dict,
    workers: int = 1,
    progress: bool = True,
    chunk_size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> CacheContents:
    """Open the cache in ``cache_dir``, building or finishing it first if needed.

    Args:
        settings: what decides the cached content (recorded; a mismatch is a UserError).
        make_listing: called only when a new cache is planned (a complete or half-built cache
            never lists the data folder again).
        split_settings: val_fraction, test_fraction, seed used for the index's split column.
        workers: decoding processes (1: in this process).
        chunk_size: images per chunk for a new cache (default ``default_chunk_size``).
    """
    if log is None:
        log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    cache_dir = Path(cache_dir).expanduser().resolve()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UserError(f"--cache {cache_dir}: exists and is not a folder")
    manifest = read_manifest(cache_dir)
    if manifest is None and cache_dir.exists() and any(p.name != LOCK for p in cache_dir.iterdir()):
        raise UserError(f"--cache {cache_dir}: folder is not empty and holds no {MANIFEST}; "
                        "give a new or empty folder")
    if manifest is not None:
        diff = _differences(manifest.get("settings", {}), settings)
        if manifest.get("version") != VERSION:
            diff.insert(0, f"format version: {manifest.get('version')!r} in the cache, {VERSION} expected")
        if diff:
            raise UserError(f"--cache {cache_dir} was made with other settings ({'; '.join(diff)}); "
                            "use another --cache folder or delete this one")
    if manifest is None or manifest.get("state") != "complete":
        # A new cache lists (and so validates) the data before anything is created on disk.
        listing = make_listing() if manifest is None or manifest.get("state") == "planning" else None
        if listing is not None:
            _check_space(cache_dir, len(listing), settings["image_size"])
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with _Lock(cache_dir):
                manifest = read_manifest(cache_dir)  # another process may have finished meanwhile
                if manifest is None or manifest.get("state") == "planning":
                    listing = listing if listing is not None else make_listing()
                    cs = chunk_size or default_chunk_size(len(listing), workers)
                    manifest = _plan(cache_dir, settings, split_settings, listing, cs)
                if manifest["state"] == "building":
                    done = _decode_all(cache_dir, manifest, workers, progress, log)
                    manifest = _finalize(cache_dir, manifest, done, log)
        except OSError as e:
            failure = _environment_failure(cache_dir, e)
            if failure is None:
                raise
            raise failure from None
    else:
        log(f"cache {cache_dir}: complete ({manifest['counts']['cached']:,} images), nothing to decode")
    return load(cache_dir, manifest)


def _check_space(cache_dir: Path, n: int, size: int) -> None:
    """Refuse up front a cache the disk cannot hold (images.npy plus its compacted copy)."""
    need = 2 * n * size * size + (1 << 20)
    existing = cache_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if need > free:
        raise EnvironmentFailure(f"--cache {cache_dir}: needs about {need / 2**20:,.0f} MiB for {n:,} images of "
                                 f"{size}x{size}, only {free / 2**20:,.0f} MiB free on that disk; free space or "
                                 "give another --cache")


def _environment_failure(cache_dir: Path, e: OSError) -> EnvironmentFailure | None:
    """A disk or permission failure while building -> one line (exit 1); None for other errors."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return EnvironmentFailure(f"--cache {cache_dir}: disk full while building the cache{where}; what was "
                                  "decoded is kept: free space and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EnvironmentFailure(f"--cache {cache_dir}: cannot write there ({e.strerror}){where}; "
                                  "give another --cache")
    return None


def _labels_column(cache_dir: Path, values) -> np.ndarray:
    """The index's label column as int64, each 0 or 1, or one line naming the file and row."""
    for i, v in enumerate(values):
        if v not in ("0", "1"):
            raise UserError(f"--cache {cache_dir}: {INDEX} row {i + 2}: label {v!r} is not 0 or 1; the cache is "
                            "damaged: delete the folder to rebuild it")
    return np.array(values, dtype=np.int64)


def load(cache_dir: Path, manifest: dict | None = None) -> CacheContents:
    """Open a complete cache: the image memmap and the index."""
    manifest = manifest or read_manifest(cache_dir)
    if manifest is None or manifest.get("state") != "complete":
        raise UserError(f"--cache {cache_dir}: not a complete cache; run `python -m chexvision preprocess` first")
    try:
        images = np.load(cache_dir / IMAGES, mmap_mode="r")
        header, rows = _read_csv(cache_dir / INDEX)
    except (OSError, ValueError, IndexError) as e:
        raise UserError(f"--cache {cache_dir} is damaged ({e}); delete the folder to rebuild") from None
    s = manifest["image_size"]
    names = tuple(header[4:])
    if header[:4] != ["path", "label", "patient", "split"] or images.shape != (len(rows), s, s) or images.dtype != np.uint8:
        raise UserError(f"--cache {cache_dir} is damaged (images.npy {images.shape} vs {len(rows)} index rows); "
                        "delete the folder to rebuild")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise UserError(f"--cache {cache_dir}: {INDEX} row {i + 2} has {len(r)} fields, expected {len(header)} "
                            f"({','.join(header)}); the cache is damaged: delete the folder to rebuild it")
    cols = list(zip(*rows)) if rows else [()] * len(header)
    findings = None
    if names:
        try:
            findings = np.array(cols[4:], dtype=np.int64).T.reshape(len(rows), len(names))
        except ValueError as e:
            raise UserError(f"--cache {cache_dir} is damaged (finding columns of {INDEX}: {e}); delete the folder "
                            "to rebuild") from None
    return CacheContents(
        images=images,
        paths=np.array(cols[0], dtype=str),
        labels=_labels_column(cache_dir, cols[1]),
        patients=np.array(cols[2], dtype=str),
        splits=np.array(cols[3], dtype=str),
        manifest=manifest,
        findings=findings,
        finding_names=names,
    )
