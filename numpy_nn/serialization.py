"""Save and load state dicts as ``.npz`` (no pickle, ever).

Twin: ``torch.save`` / ``torch.load(weights_only=True)``. Keys are torch's dotted names, so a
file written here loads into ``torch_ref`` through ``torch_ref.exchange`` with no renaming.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


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
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # e.g. ENOSPC from write(): name the file it was writing
        raise


def save(state_dict: dict, path: str | os.PathLike) -> None:
    """Write ``{name: array}`` to ``path`` (an uncompressed ``.npz``), atomically."""
    arrays = {k: np.asarray(v) for k, v in state_dict.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"state_dict entry {k!r} is an object array; only numeric arrays are saved")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def npz_headers(path: str | os.PathLike) -> "OrderedDict[str, tuple[tuple[int, ...], np.dtype]]":
    """``{name: (shape, dtype)}`` of every member of a ``.npz``, read from the ``.npy`` headers only.

    No array data is read, so a member declaring gigabytes costs nothing here: callers compare
    these headers with what they expect *before* ``load`` allocates anything. Raises
    ``ValueError`` for a member that is not a ``.npy`` file or whose header is malformed, and
    ``zipfile.BadZipFile`` / ``OSError`` for a file that is not a zip archive.
    """
    out: OrderedDict[str, tuple[tuple[int, ...], np.dtype]] = OrderedDict()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not a .npy array")
            with zf.open(info) as f:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"member {info.filename!r}: unsupported .npy version {version}")
            out[info.filename[: -len(".npy")]] = (tuple(int(n) for n in shape), np.dtype(dtype))
    return out


def load(path: str | os.PathLike, check=None) -> "OrderedDict[str, np.ndarray]":
    """Read a ``.npz`` written by ``save`` with ``allow_pickle=False``; keys keep their order.

    ``check``, if given, is called as ``check(npz_headers(path))`` before any array is read
    (it raises to refuse the file), so a member of absurd size is never allocated.
    """
    if check is not None:
        check(npz_headers(path))
    with np.load(path, allow_pickle=False) as z:
        return OrderedDict((k, z[k]) for k in z.files)
