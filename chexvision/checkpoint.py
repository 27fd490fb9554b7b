"""One checkpoint format for both tracks: a directory of ``.npz`` and ``.json`` files, no pickle.

A checkpoint directory holds

=====================  =====================================================================
``model.npz``          weights and buffers under torch's names and shapes (either track loads it)
``standardizer.npz``   the training split's standardisation statistics (``Standardizer.to_arrays``)
``config.json``        ``{"format": 1, "train": TrainConfig, "data": data config, "model": spec}``
``meta.json``          epoch, validation metrics, the decision threshold chosen on validation
``state.json``         (resumable checkpoints only) optimizer and scheduler state, RNG states,
``state.npz``          history, best metric — arrays in the ``.npz``, everything else in JSON
=====================  =====================================================================

A training run writes ``OUT/best/`` (the best validation AUC so far), then ``OUT/last/`` (the end
of the latest epoch, with the state to resume from), then ``OUT/history.json``.

Atomicity: a checkpoint is written in full into ``NAME.new/`` (every file fsynced), then swapped in
with two renames, ``NAME -> NAME.old`` and ``NAME.new -> NAME``, and ``NAME.old`` is deleted.
``recover`` repairs a swap cut short by a kill: if ``NAME`` is missing while ``NAME.old`` exists,
``NAME.new`` was complete (it is only renamed after being written), so it is promoted; a
``NAME.new`` next to an intact ``NAME`` is a half-written attempt and is discarded. A kill at any
moment therefore leaves the last good checkpoint readable.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from numpy_nn.serialization import atomic_write

from .errors import UserError

FORMAT = 1
MODEL_FILE = "model.npz"
STANDARDIZER_FILE = "standardizer.npz"
CONFIG_FILE = "config.json"
META_FILE = "meta.json"
STATE_JSON = "state.json"
STATE_NPZ = "state.npz"
BEST, LAST = "best", "last"
HISTORY_FILE = "history.json"


# -- JSON and npz helpers --------------------------------------------------------------------------
def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def read_json(path: str | os.PathLike):
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (not a chexvision checkpoint?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"{k!r} is an object array; only numeric arrays are saved")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` with ``allow_pickle=False``, in file order."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing (not a chexvision checkpoint?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # truncated, not a zip, pickled objects
        raise UserError(f"{path}: unreadable ({e})") from None


# -- nested state <-> (JSON tree, arrays) -----------------------------------------------------------
def flatten_state(tree, prefix: str, to_array: Callable | None = None) -> tuple[object, dict[str, np.ndarray]]:
    """Split a nested state (dicts, lists, tuples, numbers, arrays) into a JSON-able tree and arrays.

    Every array (and whatever ``to_array`` turns into one, e.g. a torch tensor) is stored under
    a key ``prefix.path.to.it`` and replaced in the tree by ``{"__array__": key}``; dicts with
    non-string keys (torch optimizer state is keyed by parameter index) become
    ``{"__items__": [[key, value], ...]}``; tuples become ``{"__tuple__": [...]}``; NumPy scalars
    ``{"__scalar__": dtype, "value": v}``. ``unflatten_state`` inverts it exactly.
    """
    arrays: dict[str, np.ndarray] = {}

    def walk(obj, path):
        if to_array is not None:
            converted = to_array(obj)
            if converted is not None:
                obj = converted
        if isinstance(obj, np.ndarray):
            arrays[path] = obj
            return {"__array__": path}
        if isinstance(obj, np.generic):
            return {"__scalar__": obj.dtype.str, "value": obj.item()}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: walk(v, f"{path}.{k}") for k, v in obj.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")

    return walk(tree, prefix), arrays


def unflatten_state(tree, arrays: dict, from_array: Callable | None = None):
    """Inverse of ``flatten_state``; ``from_array`` maps each stored array back (e.g. to a tensor)."""

    def walk(obj):
        if isinstance(obj, dict):
            if "__array__" in obj:
                a = np.array(arrays[obj["__array__"]], copy=True)
                return from_array(a) if from_array is not None else a
            if "__scalar__" in obj:
                return np.dtype(obj["__scalar__"]).type(obj["value"])
            if "__items__" in obj:
                return {k: walk(v) for k, v in obj["__items__"]}
            if "__tuple__" in obj:
                return tuple(walk(v) for v in obj["__tuple__"])
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(tree)


# -- atomic directory swap -------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; renames there are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _siblings(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".new"), path.with_name(path.name + ".old")


def recover(path: str | os.PathLike) -> None:
    """Finish or undo a checkpoint swap that a kill interrupted (see the module docstring)."""
    path = Path(path)
    new, old = _siblings(path)
    if not path.exists() and old.exists():
        if new.exists():
            os.rename(new, path)  # NAME.new was complete: it is renamed only after being written
        else:
            os.rename(old, path)
        _fsync_dir(path.parent)
    if new.exists():
        shutil.rmtree(new)  # a half-written attempt next to an intact NAME (or the first write)
    if old.exists():
        shutil.rmtree(old)


def write_checkpoint_dir(path: str | os.PathLike, write_files: Callable[[Path], None]) -> None:
    """Call ``write_files(tmp_dir)`` to fill a fresh directory, then swap it in as ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    new, old = _siblings(path)
    new.mkdir()
    write_files(new)  # each file is written with atomic_write (fsynced)
    _fsync_dir(new)
    if path.exists():
        os.rename(path, old)
        os.rename(new, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old)
    else:
        os.rename(new, path)
        _fsync_dir(path.parent)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_state: dict,
    standardizer: dict,
    config: dict,
    meta: dict,
    state: dict | None = None,
    state_arrays: dict | None = None,
) -> None:
    """Write one checkpoint directory atomically (``state``/``state_arrays``: the resume state)."""

    def write_files(d: Path) -> None:
        write_npz(d / MODEL_FILE, model_state)
        write_npz(d / STANDARDIZER_FILE, standardizer)
        write_json(d / CONFIG_FILE, config)
        if state is not None:
            write_npz(d / STATE_NPZ, state_arrays or {})
            write_json(d / STATE_JSON, state)
        write_json(d / META_FILE, meta)

    write_checkpoint_dir(path, write_files)


# -- reading -----------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A checkpoint read from disk. ``run_dir`` is where ``evaluate`` writes and ``predict`` looks
    for ``metrics.json`` (the run's folder, or the checkpoint folder itself when it stands alone)."""

    dir: Path
    run_dir: Path
    config: dict
    meta: dict

    @property
    def train(self) -> dict:
        return self.config["train"]

    @property
    def data(self) -> dict:
        return self.config["data"]

    @property
    def model_spec(self) -> dict:
        return self.config["model"]

    def model_state(self) -> dict[str, np.ndarray]:
        return read_npz(self.dir / MODEL_FILE)

    def standardizer_arrays(self) -> dict[str, np.ndarray]:
        return read_npz(self.dir / STANDARDIZER_FILE)

    def training_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if not (self.dir / STATE_JSON).is_file():
            raise UserError(f"{self.dir}: holds no training state to resume from (use the run's last/ checkpoint)")
        return read_json(self.dir / STATE_JSON), read_npz(self.dir / STATE_NPZ)


def resolve(path: str | os.PathLike, prefer: str = BEST) -> tuple[Path, Path]:
    """``path`` is a checkpoint folder or a run folder holding ``best/`` and ``last/``.

    Returns ``(checkpoint_dir, run_dir)``. For a run folder the ``prefer``-red checkpoint is used.
    """
    path = Path(path)
    if not path.exists() and path.name in (BEST, LAST) and os.access(path.parent, os.W_OK):
        recover(path)  # a swap cut short by a kill
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint or run directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (give a run directory or its best/ or last/ folder)")
    if os.access(path, os.W_OK):  # a read-only copy (e.g. a Kaggle input) is used as it is
        for name in (BEST, LAST):
            recover(path / name)
    if (path / MODEL_FILE).is_file():
        parent = path.parent
        run_dir = parent if path.name in (BEST, LAST) and (parent / HISTORY_FILE).is_file() else path
        return path, run_dir
    for name in (prefer, BEST, LAST):
        if (path / name / MODEL_FILE).is_file():
            return path / name, path
    raise UserError(f"{path}: not a chexvision checkpoint (no {MODEL_FILE}, best/ or last/ inside)")


def load_checkpoint(path: str | os.PathLike, prefer: str = BEST) -> Checkpoint:
    ckpt_dir, run_dir = resolve(path, prefer)
    config = read_json(ckpt_dir / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise UserError(f"{ckpt_dir / CONFIG_FILE}: checkpoint format {found!r}, this version reads {FORMAT}")
    for key in ("train", "data", "model"):
        if key not in config:
            raise UserError(f"{ckpt_dir / CONFIG_FILE}: no {key!r} section")
    meta = read_json(ckpt_dir / META_FILE)
    return Checkpoint(dir=ckpt_dir, run_dir=run_dir, config=config, meta=meta)


def check_state_fits(expected: dict[str, tuple], state: dict[str, np.ndarray], source: str, model: str) -> None:
    """One clear line when a saved state does not fit the model built from the config.

    ``expected`` maps the model's state_dict names to shapes. Names missing or unexpected and
    shapes that differ are listed (the first few) in a ``UserError``.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(np.shape(state[k]))} vs {tuple(expected[k])}"
        for k in expected
        if k in state and tuple(np.shape(state[k])) != tuple(expected[k])
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append("shape checkpoint vs model: " + "; ".join(shapes[:3]) + (" ..." if len(shapes) > 3 else ""))
    if missing:
        parts.append("missing: " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
    if unexpected:
        parts.append("unexpected: " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
    raise UserError(f"{source} does not fit the model {model}: " + " | ".join(parts))
