"""Save and load state dicts as ``.npz`` (no pickle, ever).

Twin: ``torch.save`` / ``torch.load(weights_only=True)``. Keys are torch's dotted names, so a
file written here loads into ``torch_ref`` through ``torch_ref.exchange`` with no renaming.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(fileobj)`` on a temporary file in the target's folder, fsync, then rename.

    ``os.replace`` is atomic on POSIX and Windows: a reader (or a crash) sees either the old
    file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save(state_dict: dict, path: str | os.PathLike) -> None:
    """Write ``{name: array}`` to ``path`` (an uncompressed ``.npz``), atomically."""
    arrays = {k: np.asarray(v) for k, v in state_dict.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"state_dict entry {k!r} is an object array; only numeric arrays are saved")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """Read a ``.npz`` written by ``save`` with ``allow_pickle=False``; keys keep their order."""
    with np.load(path, allow_pickle=False) as z:
        return OrderedDict((k, z[k]) for k in z.files)
