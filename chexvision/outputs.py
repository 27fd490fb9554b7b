"""What in a folder is ours, and the rules for replacing it: nothing the user did not name is lost.

* A **run folder** (``train --out``) is marked by a small ``.chexvision-run`` file (runs written
  before the marker existed are recognised by a ``best/`` or ``last/`` checkpoint of ours). Its
  own entries are the checkpoints (``best``, ``last`` and their ``.new`` / ``.old`` siblings),
  ``history.json``, the marker, our temporary files, and the files our last evaluation listed in
  its ``metrics.json``.
* ``train --out`` refuses a non-empty folder that is not a run. ``--overwrite`` replaces a run
  only when the folder holds nothing but the run's own entries, and only after every argument and
  the data were validated: the old run is renamed aside (one atomic rename) and deleted once the
  new run has written its first checkpoint; any failure before that puts it back
  (``Replacement``). A kill in between leaves ``.NAME.replaced-PID`` next to ``NAME``; the next
  ``train --out NAME`` restores it (no checkpoint was written yet) or removes it.
* ``evaluate --out`` / ``predict --out`` overwrite a file only if an earlier call of ours wrote it
  (``claim_outputs`` / ``claim_file``), else refuse with one line unless ``--force``; they delete
  only files our previous ``metrics.json`` listed.
* Temporary files of ours (``.NAME.XXXXXXXX.tmp`` from ``atomic_write``) left by a kill are removed
  the next time a command writes into the folder (``remove_stale_tmp``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from . import checkpoint as ckpt
from .errors import UserError

MARKER = ".chexvision-run"
METRICS_SCHEMA_PREFIX = "chexvision.metrics"  # "chexvision.metrics/1", "chexvision.metrics.findings/1"
RUN_ENTRIES = frozenset({MARKER, ckpt.HISTORY_FILE} | {f"{n}{s}" for n in (ckpt.BEST, ckpt.LAST)
                                                         for s in ("", ".new", ".old")})
_TMP = re.compile(r"^\.(?P<name>[^/]+)\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a file name, never a path


def _shown(names) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# -- what is ours ---------------------------------------------------------------------------------------
def evaluation_files(folder: Path) -> set[str]:
    """The files our ``metrics.json`` in ``folder`` says its evaluation wrote (empty if none or foreign)."""
    path = Path(folder) / "metrics.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 << 20:
            return set()
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not (isinstance(metrics, dict) and str(metrics.get("schema", "")).startswith(METRICS_SCHEMA_PREFIX)):
        return set()
    files = metrics.get("files")
    if not isinstance(files, list):
        return set()
    from .report import ARTIFACTS  # a hand-edited list cannot make a user's file "ours"

    return {f for f in files if isinstance(f, str) and _PLAIN_NAME.match(f) and f in ARTIFACTS}


def is_run_dir(folder: Path) -> bool:
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    for name in (ckpt.BEST, ckpt.LAST):
        try:
            config = json.loads((folder / name / ckpt.CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("format") == ckpt.FORMAT and "train" in config:
            return True
    return False


def _is_our_tmp(name: str, ours: set[str]) -> bool:
    m = _TMP.match(name)
    return bool(m and m.group("name") in ours)


def _is_our_report_dir(path: Path) -> bool:
    """A sub-folder holding a report of ours (e.g. ``external-nih/`` of ``evaluate --dataset``)."""
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        schema = json.loads((path / "metrics.json").read_text(encoding="utf-8")).get("schema", "")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(schema, str) and schema.startswith("chexvision.")


def foreign_entries(folder: Path) -> list[str]:
    """Entries of a run folder that are not the run's own."""
    folder = Path(folder)
    ours = set(RUN_ENTRIES) | evaluation_files(folder)
    return sorted(n for n in os.listdir(folder) if n not in ours and not _is_our_tmp(n, ours | _tmp_names())
                  and not _is_our_report_dir(folder / n))


def _tmp_names() -> set[str]:
    from .report import ARTIFACTS

    return set(RUN_ENTRIES) | set(ARTIFACTS)


def remove_stale_tmp(folder: Path) -> list[str]:
    """Delete our ``atomic_write`` temporaries left in ``folder`` by a kill; returns their names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = _tmp_names()
    removed = []
    for entry in os.scandir(folder):
        if _is_our_tmp(entry.name, names) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def write_marker(out: Path) -> None:
    ckpt.write_json(Path(out) / MARKER, {"chexvision": "run folder", "format": ckpt.FORMAT})


# -- train --out ------------------------------------------------------------------------------------------
def check_train_out(out: Path, overwrite: bool) -> str:
    """Decide, touching nothing, what ``train --out`` may do: ``"fresh"`` or ``"replace"`` (else UserError)."""
    out = Path(out)
    _restore_interrupted_replacement(out)
    for name in (ckpt.BEST, ckpt.LAST):
        ckpt.refuse_links(out / name)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if not out.exists() or not any(os.scandir(out)):
        return "fresh"
    if not is_run_dir(out):
        raise UserError(f"--out {out}: the folder holds files that are not a chexvision run ({_shown(os.listdir(out))}); "
                        "nothing was changed: choose a new or empty folder")
    found = [n for n in (ckpt.BEST, ckpt.LAST, ckpt.HISTORY_FILE) if (out / n).exists()]
    if not found and not foreign_entries(out) and not evaluation_files(out):
        return "fresh"  # a run that stopped before its first checkpoint: only our marker (and temporaries)
    if not overwrite:
        raise UserError(f"--out {out} already holds a run ({', '.join(found) or 'its evaluation'}); continue it with --resume "
                        f"{out}, or pass --overwrite, or choose another --out")
    if out.is_symlink():
        raise UserError(f"--out {out}: is a symbolic link; --overwrite replaces only a plain run folder")
    cwd = Path.cwd().resolve()
    if cwd == out.resolve() or out.resolve() in cwd.parents:
        raise UserError(f"--out {out}: is the current folder (or holds it); --overwrite renames the old run aside, "
                        "so run it from another folder")
    foreign = foreign_entries(out)
    if foreign:
        raise UserError(f"--overwrite replaces only a run's own files, and {out} also holds {_shown(foreign)}; "
                        "move them elsewhere first (nothing was changed)")
    return "replace"


class Replacement:
    """The old run renamed aside while the new one starts; ``commit`` deletes it, ``rollback`` restores it."""

    def __init__(self, out: Path, plan: str):
        self.out, self.aside = Path(out), None
        if plan == "replace":
            self.aside = self.out.with_name(f".{self.out.name}.replaced-{os.getpid()}")
            os.rename(self.out, self.aside)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.out)
        write_marker(self.out)

    def commit(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def rollback(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.out, ignore_errors=True)  # holds only what the new run wrote
            os.rename(self.aside, self.out)
            self.aside = None


def _restore_interrupted_replacement(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return
    asides = sorted(p for p in parent.glob(f".{out.name}.replaced-*") if p.is_dir() and not p.is_symlink())
    for aside in asides:
        if out.is_dir() and not (out / ckpt.LAST).exists() and not foreign_entries(out):
            shutil.rmtree(out)  # the new run wrote no checkpoint: put the old one back
            os.rename(aside, out)
        else:
            shutil.rmtree(aside)


# -- evaluate --out / predict --out ------------------------------------------------------------------------
def claim_outputs(folder: Path, names: list[str], force: bool = False, flag: str = "--out") -> list[str]:
    """Check that ``names`` may be written into ``folder``; returns the stale files to delete afterwards.

    A same-named file that an earlier evaluation of ours did not list is refused (one line) unless
    ``force``; a directory in the way is always refused. The stale files are those our previous
    ``metrics.json`` listed that this evaluation does not write: nothing else is ever deleted.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder}: exists and is not a directory")
    _check_parents(folder, flag)
    if not folder.exists():
        return []
    previous = evaluation_files(folder)
    dirs = [n for n in names if (folder / n).is_dir()]
    if dirs:
        raise UserError(f"{flag} {folder}: {_shown(dirs)} is a directory in the way; nothing was written")
    clash = [n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
    clash = [n for n in clash if n not in previous]
    if clash and not force:
        raise UserError(f"{flag} {folder}: {_shown(clash)} already exist and were not written by an earlier "
                        "evaluation of ours; choose another folder, or pass --force to replace them")
    remove_stale_tmp(folder)
    return sorted(n for n in previous - set(names) if (folder / n).is_file() and not (folder / n).is_symlink())


PREDICT_MARKS = (b"p_abnormal", b'"probabilities"', b"path,p_")  # binary CSV/JSON, findings JSON, findings CSV


def claim_file(path: Path, force: bool = False, flag: str = "--out", marks: tuple = PREDICT_MARKS) -> None:
    """A single output file: its folder must be a folder, and an existing file must be ours (its
    first 4 KB hold one of ``marks``, or it is our empty JSON result ``[]``) unless ``force``."""
    path = Path(path)
    _check_parents(path.parent, flag, path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory")
    if path.exists() and not force:
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            head = b""
        if not any(m in head for m in marks) and head.strip() != b"[]":  # "[]": our JSON when nothing scored
            raise UserError(f"{flag} {path}: the file exists and was not written by chexvision; choose another name, "
                            "or pass --force to replace it")


def _check_parents(folder: Path, flag: str, named: Path | None = None) -> None:
    """The first existing ancestor of ``folder`` must be a directory (``predict --out FILE/x.csv``)."""
    p = Path(folder)
    while str(p) not in ("", ".") and not p.exists():
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {named or folder}: {p} is a file, not a folder")


# -- compare's folder -----------------------------------------------------------------------------------
COMPARE_FILES = ("compare.json", "divergence.png", "losses.png", "timing.png")  # what a compare writes into --out


def claim_compare_outputs(out: Path, force: bool) -> None:
    """Refuse (one line) an ``--out`` whose compare.json / plots were not written by an earlier compare.

    Ours: ``compare.json`` is a regular file holding our ``config`` and ``verdict`` objects (issue 10 §1).
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    present = [n for n in COMPARE_FILES if (out / n).exists() or (out / n).is_symlink()]
    in_the_way = [n for n in present if (out / n).is_dir() or (out / n).is_symlink()]
    if in_the_way:
        raise UserError(f"--out {out}: {', '.join(in_the_way)} is a folder or a link; nothing was written")
    if present and not force and not _compare_json_is_ours(out / "compare.json"):
        raise UserError(f"--out {out}: {', '.join(present)} already exist and were not written by an earlier "
                        "compare; choose another folder, or pass --force to replace them")


def _compare_json_is_ours(path: Path) -> bool:
    try:
        if not path.is_file() or path.stat().st_size > 256 << 20:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("config"), dict) and isinstance(data.get("verdict"), dict)
