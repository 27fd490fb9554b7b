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
from numpy_nn.serialization import load as _load_npz

from . import validate
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
    """Atomically write ``obj`` as indented, strict JSON (NaN or an infinity is a bug: ValueError)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | os.PathLike):
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a FIFO (which would block), a device
        raise UserError(f"{path}: not a regular file")
    if path.is_file() and path.stat().st_size > 256 << 20:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes, larger than any file of ours")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (not a chexvision checkpoint?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path}: not valid JSON ({str(e)[:80]})") from None


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"{k!r} is an object array; only numeric arrays are saved")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path: str | os.PathLike, check=None) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` with ``allow_pickle=False``, in file order.

    ``check(headers)`` (see ``chexvision.validate.expect_headers``) sees every member's shape and
    dtype, read from the ``.npy`` headers, before any array is read; float arrays read are then
    refused if they hold NaN or an infinity (whenever ``check`` is given).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        what = "a symbolic link" if path.is_symlink() else "not a regular file" if path.exists() else "missing"
        raise UserError(f"{path}: {what} (not a chexvision checkpoint?)")
    try:
        arrays = dict(_load_npz(path, check=check))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # truncated, not a zip, pickled objects
        raise UserError(f"{path}: unreadable ({e})") from None
    return validate.check_finite(arrays, str(path)) if check is not None else arrays


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


def refuse_links(path: str | os.PathLike) -> None:
    """A checkpoint folder ``NAME`` or its ``NAME.new`` / ``NAME.old`` that is a symbolic link is
    refused with one line: we never write through, rename or delete a link's target."""
    path = Path(path)
    for p in (path, *_siblings(path)):
        if p.is_symlink():
            raise UserError(f"{p}: is a symbolic link; a run's checkpoint folders must be plain folders "
                            "(nothing was changed)")


def recover(path: str | os.PathLike) -> None:
    """Finish or undo a checkpoint swap that a kill interrupted (see the module docstring)."""
    path = Path(path)
    refuse_links(path)
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
    try:
        write_files(new)  # each file is written with atomic_write (fsynced)
        _fsync_dir(new)
    except BaseException:  # e.g. a full disk: NAME is untouched; drop the half-written NAME.new
        shutil.rmtree(new, ignore_errors=True)
        raise
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

    def model_state(self, expected: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The weights; with ``expected`` (the built model's own state) every member's name, shape
        and dtype is checked from the file's headers before anything is read, then finiteness."""
        path = self.dir / MODEL_FILE
        check = None
        if expected is not None:
            from .tracks import describe

            want = {k: (np.shape(v), np.asarray(v).dtype) for k, v in expected.items()}
            check = validate.expect_headers(want, str(path), describe(self.model_spec))
        return read_npz(path, check)

    def standardizer_arrays(self) -> dict[str, np.ndarray]:
        """``{"mean", "std"}``, each (S, S) float32/float64 for the model's image size, finite."""
        path = self.dir / STANDARDIZER_FILE
        s = int(self.model_spec["image_size"])
        want = {"mean": ((s, s), np.float32), "std": ((s, s), np.float32)}
        arrays = read_npz(path, validate.expect_headers(want, str(path), f"of {s}x{s} images"))
        if not (arrays["std"] > 0).all():
            raise UserError(f"{path}: array 'std' must be positive everywhere")
        return arrays

    def training_state(self, max_elements: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        """``(state.json, state.npz)``; ``max_elements``: the largest array the model can have."""
        if not (self.dir / STATE_JSON).is_file():
            raise UserError(f"{self.dir}: holds no training state to resume from (use the run's last/ checkpoint)")
        state = validate.check_resume_state(read_json(self.dir / STATE_JSON), str(self.dir / STATE_JSON),
                                            self.train["epochs"])
        bound = max(max_elements or validate.MAX_PARAMS, 1 << 16)  # RNG states: a few thousand bytes
        path = self.dir / STATE_NPZ
        return state, read_npz(path, validate.bounded_headers(bound, str(path), allow_bytes=True))


def resolve(path: str | os.PathLike, prefer: str = BEST) -> tuple[Path, Path]:
    """``path`` is a checkpoint folder or a run folder holding ``best/`` and ``last/``.

    Returns ``(checkpoint_dir, run_dir)``. For a run folder the ``prefer``-red checkpoint is used.
    """
    path = Path(path)
    if path.name in (BEST, LAST):
        refuse_links(path)
    if not path.exists() and path.name in (BEST, LAST) and os.access(path.parent, os.W_OK):
        recover(path)  # a swap cut short by a kill
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint or run directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (give a run directory or its best/ or last/ folder)")
    for name in (BEST, LAST):
        refuse_links(path / name)
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
    """Resolve and read a checkpoint; config.json and meta.json are type- and range-checked."""
    ckpt_dir, run_dir = resolve(path, prefer)
    config = check_config(read_json(ckpt_dir / CONFIG_FILE), str(ckpt_dir / CONFIG_FILE))
    meta = validate.check_meta(read_json(ckpt_dir / META_FILE), str(ckpt_dir / META_FILE))
    return Checkpoint(dir=ckpt_dir, run_dir=run_dir, config=config, meta=meta)


def check_config(config, source: str) -> dict:
    """A checkpoint's config.json: our format, and every section valid (one line naming the file)."""
    if not isinstance(config, dict) or not validate.is_int(config.get("format")) or config["format"] != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise UserError(f"{source}: checkpoint format {found!r}, this version reads {FORMAT}")
    for key in ("train", "data", "model"):
        if key not in config:
            raise UserError(f"{source}: no {key!r} section")
    from .config import TrainConfig

    try:
        train = TrainConfig.from_dict(config["train"])
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    if not isinstance(config["data"], dict):
        raise UserError(f"{source}: the 'data' section must be an object, got {type(config['data']).__name__}")
    from .data import dataset

    try:  # the data layer's own checks of its settings, reported against this file
        dataset._normalise(config["data"])
    except (UserError, TypeError, ValueError) as e:
        raise UserError(f"{source}: data: {e}") from None
    validate.check_spec(config["model"], source)
    validate.check_model_size(config["model"], train.batch_size, source)
    validate.check_data_limits(config["data"], source)
    return config


def check_state_fits(expected: dict[str, tuple], state: dict[str, np.ndarray], source: str, model: str) -> None:
    """One clear line when a saved state does not fit the model built from the config.

    ``expected`` maps the model's state_dict names to shapes. Names missing or unexpected and
    shapes that differ are listed (the first few) in a ``UserError``.
    """
    validate.check_names_and_shapes(expected, {k: np.shape(v) for k, v in state.items()}, source, model)
