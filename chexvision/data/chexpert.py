"""CheXpert-v1.0-small: ``train.csv`` / ``valid.csv`` and JPEGs under ``train/`` / ``valid/``.

* Files: ``--data-dir`` is the folder holding ``train.csv`` or its parent (the Kaggle layout
  ``<dir>/CheXpert-v1.0-small/train.csv``). ``Path`` values start with
  ``CheXpert-v1.0-small/``; that prefix is resolved against the folder holding the CSVs.
* Label (binary screening): any of the 12 pathology columns == 1 -> 1 (abnormal); else
  "No Finding" == 1 -> 0 (normal). "Support Devices" is not a pathology and is ignored (a
  patient with a line in place and nothing else is normal, as CheXpert's own "No Finding" says).
* Uncertain findings (-1) decide the label only when no finding is certain (== 1), under
  ``--uncertain``:
  ``ignore`` (default) leaves those images out, so no label is a guess (the paper's U-Ignore);
  ``positive`` counts them abnormal (U-Ones); ``negative`` counts them normal (U-Zeros).
  Rows with no positive, no uncertain finding and no "No Finding" are left out as unlabelled.
* ``task="findings"``: every row is kept, with one column per observation of
  ``CHEXPERT_FINDINGS`` (the 14 of the CSV): 1 -> 1, 0 or blank -> 0, uncertain (-1) ->
  ``ignore``: -1 (U-Ignore: masked out of that finding's loss and metrics), ``positive``: 1
  (U-Ones), ``negative``: 0 (U-Zeros). The (N,) label used to stratify splits is "any of the
  12 pathologies is 1" after that mapping.
* Patient: ``patientNNNNN`` from the path.
* Split: ``valid.csv`` (radiologist-labelled, 200 patients) is the untouched **test** set;
  validation is carved by patient from ``train.csv``. Without ``valid.csv``: a patient-level
  split of ``train.csv``.
* Filters: ``--frontal-only`` keeps ``Frontal/Lateral`` == Frontal; ``--view AP|PA`` keeps that
  ``AP/PA`` value (laterals have none, so they go too).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from .listing import (
    OUTSIDE,
    Listing,
    check_data_dir,
    column_index,
    drop_test_patients_from_trainval,
    file_problem,
    inside,
    read_csv,
)

PATHOLOGIES = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
    "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
)
UNCERTAIN_POLICIES = ("ignore", "positive", "negative")
_PATIENT = re.compile(r"(patient\d+)")


def _value(cell: str) -> float:
    """CheXpert cell -> 1.0, 0.0, -1.0 or nan (blank)."""
    cell = cell.strip()
    if not cell:
        return float("nan")
    try:
        return float(cell)
    except ValueError:
        return float("nan")


def _find_csv_folder(root: Path) -> Path:
    if (root / "train.csv").is_file():
        return root
    cands = sorted(p.parent for p in root.glob("*/train.csv") if inside(root, p))
    if not cands:
        raise UserError(f"--data-dir {root}: no CheXpert train.csv there or one folder down "
                        "(expected CheXpert-v1.0-small/train.csv)")
    return cands[0]


def _resolve(base: Path, root: Path, p: str) -> Path:
    """``CheXpert-v1.0-small/train/...`` -> a file under ``base`` (the folder with the CSVs)."""
    parts = Path(p.strip()).parts
    if parts and parts[0] == base.name:
        return base.joinpath(*parts[1:])
    if parts and parts[0].lower().startswith("chexpert"):  # another copy's prefix
        return base.joinpath(*parts[1:])
    return base / p.strip()


_UNCERTAIN_TO = {"ignore": -1, "positive": 1, "negative": 0}


def _finding_row(r: list[str], cols: list[int | None], uncertain: str) -> list[int]:
    """One CSV row -> 14 values of 1 / 0 / -1 under the uncertainty policy (blank or absent = 0)."""
    out = []
    for i in cols:
        v = _value(r[i]) if i is not None else float("nan")
        out.append(1 if v == 1 else _UNCERTAIN_TO[uncertain] if v == -1 else 0)
    return out


def _read(csv_path: Path, base: Path, root: Path, uncertain: str, frontal_only: bool, view: str,
          task: str = "binary"):
    header, rows = read_csv(csv_path)
    i_path = column_index(header, csv_path, "Path")
    i_nf = column_index(header, csv_path, "No Finding")
    i_fl = column_index(header, csv_path, "Frontal/Lateral", " (needed by --frontal-only)") if frontal_only else None
    i_view = column_index(header, csv_path, "AP/PA", " (needed by --view)") if view != "all" else None
    i_path_cols = [header.index(c) for c in PATHOLOGIES if c in header]
    if not i_path_cols:
        raise UserError(f"{csv_path}: missing the finding columns (expected e.g. {PATHOLOGIES[1]!r})")
    out = {"paths": [], "labels": [], "patients": [], "findings": []}
    findings = task == "findings"
    if findings:
        from ..tasks import CHEXPERT_FINDINGS

        f_cols = [header.index(c) if c in header else None for c in CHEXPERT_FINDINGS]
        path_pos = [CHEXPERT_FINDINGS.index(c) for c in PATHOLOGIES]
    stats = {"uncertain_only": 0, "unlabelled": 0, "filtered": 0, "missing": 0, "outside": 0}
    problems = []
    width = max([i_path, i_nf, *i_path_cols] + [i for i in (i_fl, i_view) if i is not None]) + 1
    if findings:
        width = max([width] + [i + 1 for i in f_cols if i is not None])
    for line, r in enumerate(rows, start=2):
        r = r + [""] * (width - len(r))
        if frontal_only and r[i_fl].strip().lower() != "frontal":
            stats["filtered"] += 1
            continue
        if i_view is not None and r[i_view].strip().upper() != view.upper():
            stats["filtered"] += 1
            continue
        vals = np.array([_value(r[i]) for i in i_path_cols])
        f_row = _finding_row(r, f_cols, uncertain) if findings else None
        if findings:
            y = int(any(f_row[j] == 1 for j in path_pos))
        elif (vals == 1).any():
            y = 1
        elif (vals == -1).any():
            if uncertain == "ignore":
                stats["uncertain_only"] += 1
                continue
            y = 1 if uncertain == "positive" else 0
        elif _value(r[i_nf]) == 1:
            y = 0
        else:
            stats["unlabelled"] += 1
            problems.append((r[i_path].strip(), f"{csv_path.name} line {line}: no finding and no 'No Finding'; left out"))
            continue
        f = _resolve(base, root, r[i_path])
        if not inside(root, f):  # an absolute path elsewhere, a ../ escape, a symlink out: never opened
            stats["outside"] += 1
            problems.append((r[i_path].strip(), OUTSIDE))
            continue
        why = file_problem(f)
        if why is not None:
            stats["missing"] += 1
            problems.append((r[i_path].strip(), f"listed in {csv_path.name} but not found" if why.startswith("no such")
                             else f"listed in {csv_path.name}: {why}"))
            continue
        m = _PATIENT.search(r[i_path])
        patient = m.group(1) if m else Path(r[i_path].strip()).parent.parent.name
        try:
            rel = f.relative_to(root).as_posix()
        except ValueError:
            rel = f.as_posix()
        out["paths"].append(rel)
        out["labels"].append(y)
        out["patients"].append(patient)
        out["findings"].append(f_row)
    return out, stats, problems, len(rows)


def list_chexpert(data_dir, uncertain: str = "ignore", frontal_only: bool = False, view: str = "all",
                  task: str = "binary") -> Listing:
    if uncertain not in UNCERTAIN_POLICIES:
        raise UserError(f"--uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}")
    root = check_data_dir(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: not a folder (CheXpert expects the folder holding train.csv)")
    base = _find_csv_folder(root)
    parts, notes, problems = [], [], []
    counts = {"listed": 0, "missing": 0, "uncertain_only": 0, "unlabelled": 0, "filtered": 0, "outside": 0}
    sources = [("train.csv", False)] + ([("valid.csv", True)] if (base / "valid.csv").is_file() else [])
    for name, is_test in sources:
        out, stats, probs, n_rows = _read(base / name, base, root, uncertain, frontal_only, view, task)
        counts["listed"] += n_rows
        for k in stats:
            counts[k] += stats[k]
        problems += probs
        parts.append((out, is_test))
        notes.append(f"{name}: {n_rows:,} rows -> {len(out['paths']):,} images"
                     + (f" ({stats['uncertain_only']:,} left out as uncertain-only)" if stats["uncertain_only"] else "")
                     + (f", {stats['missing']:,} missing on disk" if stats["missing"] else "")
                     + (f", {stats['outside']:,} {OUTSIDE}" if stats["outside"] else ""))
    paths = [p for out, _ in parts for p in out["paths"]]
    if not paths:
        raise UserError(f"--data-dir {root}: no CheXpert image listed in train.csv/valid.csv was found on disk "
                        f"(paths resolved against {base})")
    labels = np.array([y for out, _ in parts for y in out["labels"]], np.int64)
    patients = np.array([p for out, _ in parts for p in out["patients"]], dtype=str)
    filt = ["--frontal-only" if frontal_only else "", f"--view {view}" if view != "all" else ""]
    if any(filt):
        notes.append(f"{' '.join(f for f in filt if f)}: {counts['filtered']:,} images filtered out")
    notes.append(f"--uncertain {uncertain}: " + ({
        "ignore": "uncertain (-1) entries masked out of that finding's loss and metrics (U-Ignore)",
        "positive": "uncertain (-1) entries count as present (U-Ones)",
        "negative": "uncertain (-1) entries count as absent (U-Zeros)",
    }[uncertain] if task == "findings" else {
        "ignore": "images whose only findings are uncertain (-1) left out",
        "positive": "uncertain (-1) findings count as abnormal",
        "negative": "uncertain (-1) findings count as normal",
    }[uncertain]))
    if len(sources) == 2:
        test_mask = np.concatenate([np.full(len(out["paths"]), t) for out, t in parts])
        notes.append("split: valid.csv is the untouched test set; validation carved by patient from train.csv")
    else:
        test_mask = None
        notes.append("no valid.csv: patient-level split of train.csv (test and validation carved by patient)")
    listing = Listing(root, paths, labels, patients, test_mask, notes, problems, counts)
    if task == "findings":
        from ..tasks import CHEXPERT_FINDINGS

        listing.findings = np.array([f for out, _ in parts for f in out["findings"]], np.int64).reshape(
            len(paths), len(CHEXPERT_FINDINGS))
        listing.finding_names = CHEXPERT_FINDINGS
    return drop_test_patients_from_trainval(listing, "valid.csv")
