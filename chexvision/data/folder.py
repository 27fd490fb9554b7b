"""Your own images: ``normal/`` + ``abnormal/`` subfolders, or a CSV of ``path,label[,patient]``.

``--data-dir`` is one of

* a folder with ``normal/`` and ``abnormal/`` subfolders (images found at any depth inside);
* a folder holding ``labels.csv``, or a ``.csv`` file itself: columns ``path`` and ``label``
  (``0``/``1`` or ``normal``/``abnormal``), optionally ``patient``; paths are relative to the
  CSV's folder or absolute, and must lie inside that folder (after symlinks): any other path is
  left out as "outside the data folder", never opened.

With ``task="findings"`` the CSV has ``path``, optionally ``patient``, and one column per
finding (any other header; a ``label`` column is ignored): ``1``/``0``, or ``-1`` / blank for
unknown (masked out of that finding's loss and metrics).

Without patient ids every image counts as its own patient, which is only safe if no patient has
two images; the description says so. The split is a patient-level one (no official test set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .listing import OUTSIDE, Listing, check_data_dir, column_index, file_problem, inside, read_csv, scan_images

_LABELS = {"0": 0, "1": 1, "normal": 0, "abnormal": 1, "0.0": 0, "1.0": 1}
NO_PATIENT_NOTE = ("no patient ids: each image counts as its own patient (if a patient has several "
                   "images they may land in different splits; give a CSV with a patient column)")


def _from_subfolders(root: Path) -> Listing:
    paths, labels = [], []
    for label, sub in ((0, "normal"), (1, "abnormal")):
        found = scan_images(root / sub, within=root)
        paths += [f"{sub}/{p}" for p in found]
        labels += [label] * len(found)
    if not paths:
        raise UserError(f"--data-dir {root}: normal/ and abnormal/ hold no image files")
    patients = np.array([p.rsplit(".", 1)[0] for p in paths], dtype=str)
    notes = [f"folders: normal/ ({labels.count(0):,} images), abnormal/ ({labels.count(1):,} images)",
             NO_PATIENT_NOTE, "split: patient-level (no official test set)"]
    return Listing(root, paths, np.array(labels, np.int64), patients, None, notes, [], {"listed": len(paths)})


_FINDING_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1, "": -1}


def _findings_from_csv(csv_path: Path) -> Listing:
    header, rows = read_csv(csv_path)
    i_path = column_index(header, csv_path, "path")
    low = [h.lower() for h in header]
    i_pat = low.index("patient") if "patient" in low else None
    cols = [i for i, h in enumerate(low) if h and h not in ("path", "patient", "label")]
    if not cols:
        raise UserError(f"{csv_path}: --task findings needs one 0/1 column per finding besides path[,patient] "
                        f"(columns found: {', '.join(header)})")
    base = csv_path.parent
    paths, patients, findings, problems = [], [], [], []
    for line, r in enumerate(rows, start=2):
        r = r + [""] * (len(header) - len(r))
        p = r[i_path].strip()
        vals = []
        for i in cols:
            v = r[i].strip().lower()
            if v not in _FINDING_VALUES:
                raise UserError(f"{csv_path} line {line}: {header[i]} = {r[i]!r}; a finding is 1, 0, or -1 / blank "
                                "(unknown)")
            vals.append(_FINDING_VALUES[v])
        if not (base / p).is_file():
            problems.append((p, f"listed in {csv_path.name} but not found"))
            continue
        paths.append(p)
        findings.append(vals)
        patients.append(r[i_pat].strip() if i_pat is not None and r[i_pat].strip() else p.rsplit(".", 1)[0])
    if not paths:
        raise UserError(f"{csv_path}: none of its {len(rows):,} listed images were found")
    f = np.array(findings, np.int64).reshape(len(paths), len(cols))
    notes = [f"labels: {csv_path.name} ({len(rows):,} rows, {len(problems):,} listed files missing), "
             f"{len(cols)} findings: {', '.join(header[i] for i in cols)}"]
    if i_pat is None:
        notes.append(NO_PATIENT_NOTE)
    notes.append("split: patient-level (no official test set)")
    return Listing(base, paths, (f == 1).any(axis=1).astype(np.int64), np.array(patients, dtype=str), None, notes,
                   problems, {"listed": len(rows), "missing": len(problems)}, f, tuple(header[i] for i in cols))


def _from_csv(csv_path: Path, task: str = "binary") -> Listing:
    if task == "findings":
        return _findings_from_csv(csv_path)
    header, rows = read_csv(csv_path)
    i_path = column_index(header, csv_path, "path")
    i_label = column_index(header, csv_path, "label")
    i_pat = column_index(header, csv_path, "patient") if "patient" in [h.lower() for h in header] else None
    base = csv_path.parent
    paths, labels, patients, problems = [], [], [], []
    n_outside = 0
    for line, r in enumerate(rows, start=2):
        r = r + [""] * (len(header) - len(r))
        p, lab = r[i_path].strip(), r[i_label].strip().lower()
        if lab not in _LABELS:
            raise UserError(f"{csv_path} line {line}: label {r[i_label]!r} is not one of 0, 1, normal, abnormal")
        if not inside(base, p):  # an absolute path elsewhere, a ../ escape, a symlink out: never opened
            problems.append((p, OUTSIDE))
            n_outside += 1
            continue
        why = file_problem(base / p)
        if why is not None:
            problems.append((p, f"listed in {csv_path.name} but not found" if why.startswith("no such")
                             else f"listed in {csv_path.name}: {why}"))
            continue
        paths.append(p)
        labels.append(_LABELS[lab])
        patients.append(r[i_pat].strip() if i_pat is not None and r[i_pat].strip() else p.rsplit(".", 1)[0])
    if not paths:
        raise UserError(f"{csv_path}: none of its {len(rows):,} listed images were found"
                        + (f" ({n_outside:,} lie {OUTSIDE}, never read)" if n_outside else ""))
    n_missing = len(problems) - n_outside
    notes = [f"labels: {csv_path.name} ({len(rows):,} rows, {n_missing:,} listed files missing"
             + (f", {n_outside:,} {OUTSIDE}" if n_outside else "") + ")"]
    if i_pat is None:
        notes.append(NO_PATIENT_NOTE)
    notes.append("split: patient-level (no official test set)")
    return Listing(base, paths, np.array(labels, np.int64), np.array(patients, dtype=str), None, notes, problems,
                   {"listed": len(rows), "missing": n_missing, "outside": n_outside})


def list_folder(data_dir, task: str = "binary") -> Listing:
    root = check_data_dir(data_dir)
    if root.is_file():
        if not root.name.lower().endswith(".csv"):
            raise UserError(f"--data-dir {root}: a file, but not a .csv (folder dataset wants a folder or a CSV)")
        return _from_csv(root, task)
    if (root / "labels.csv").is_file() and task == "findings":
        return _from_csv(root / "labels.csv", task)
    if (root / "normal").is_dir() and (root / "abnormal").is_dir():
        if task == "findings":
            raise UserError(f"--data-dir {root}: normal/ and abnormal/ folders carry no findings; --task findings "
                            "needs a labels.csv with one 0/1 column per finding")
        return _from_subfolders(root)
    if (root / "labels.csv").is_file():
        return _from_csv(root / "labels.csv")
    raise UserError(f"--data-dir {root}: expected normal/ and abnormal/ subfolders or a labels.csv "
                    "(columns path,label[,patient])")
