"""What the preprocessing cache's worker processes run, and the progress log they feed: decode a
chunk of rows (``_decode_chunk``), die with the main process (``_worker_init``), and read the
finished chunks back (``_read_progress``). Moved unchanged out of ``chexvision/data/cache.py``
(see its docstring: resumable builds, failures), which re-exports every name.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from .images import BadImage, decode
from .listing import OUTSIDE, inside

# -- progress log -------------------------------------------------------------------------------

def _read_progress(path: Path) -> dict[int, list]:
    """{chunk: [[row, reason], ...]} of finished chunks; a torn last line (a kill mid-write) is
    cut off so later appends start on a clean line."""
    done: dict[int, list] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    good = 0
    for line in data.split(b"\n")[:-1]:  # the last piece is b"" or a torn line
        try:
            rec = json.loads(line)
            done[int(rec["chunk"])] = rec["bad"]
        except (ValueError, KeyError, TypeError):
            break
        good += len(line) + 1
    if good != len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


# -- the worker ---------------------------------------------------------------------------------

def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with the main process, however that one ends (even SIGKILL).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills us when the parent dies. Every
    platform: a daemon thread waits on the parent's sentinel (a pipe end the parent holds open
    on POSIX, its process handle on Windows) and exits the moment it closes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc prctl: the thread below still works
            pass
    if os.name == "posix" and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    import multiprocessing as mp
    from multiprocessing.connection import wait as wait_for

    parent = mp.parent_process()
    if parent is not None and parent.sentinel is not None:
        def watch():
            wait_for([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_init(parent_pid: int) -> None:
    """Workers leave Ctrl-C to the main process (which stops the pool cleanly) and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)


def _decode_chunk(task):
    """(chunk, first_row, root, rel_paths, S) -> (chunk, (k, S, S) uint8, [[row, reason], ...]).

    Each path is checked again here (the plan file could have been edited between runs): a path
    resolving outside ``root`` is reported, never opened.
    """
    chunk, first, root, rels, size = task
    out = np.zeros((len(rels), size, size), np.uint8)
    bad = []
    for j, rel in enumerate(rels):
        f = os.path.join(root, rel)
        if not inside(root, f):
            bad.append([first + j, OUTSIDE])
            continue
        try:
            out[j] = decode(f, size)
        except BadImage as e:
            bad.append([first + j, str(e)])
    return chunk, out, bad


def reason_kind(reason: str) -> str:
    """A reason's category for the summary: "truncated file (...)" -> "truncated file"."""
    kind = reason.split(":", 1)[0].split(" (", 1)[0].strip()
    if kind.startswith("listed in") or "not found" in reason:
        return "listed but missing"
    return kind or "other"
