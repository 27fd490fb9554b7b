"""RSNA Pneumonia Detection Challenge, in the Kaggle layout (DICOM images; needs the ``dicom`` extra).

* Files: ``stage_2_train_labels.csv`` (or the stage-1 ``stage_1_train_labels.csv``) in
  ``--data-dir`` or up to two folders down, and one DICOM per patient in
  ``stage_2_train_images/<patientId>.dcm`` beside it. The unlabelled ``stage_2_test_images/``
  are not used (the challenge kept their labels).
* Label (binary): ``Target`` 1 (pneumonia: the patient has one row per bounding box) -> 1,
  ``Target`` 0 (one row, empty box) -> 0. A patient whose rows disagree is left out and reported.
* Patient: ``patientId`` (one image each), so the split is patient-level (test and validation
  carved by patient; the challenge's own test labels are not public).
* A ``patientId`` must be a plain file name (letters, digits, ``.``, ``_``, ``-``); anything else
  (``../x``, an absolute path) is left out as "outside the data folder", never opened.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import UserError
from .listing import OUTSIDE, Listing, check_data_dir, column_index, file_problem, find_file, read_csv, scan_images

LABEL_FILE_NAMES = ("stage_2_train_labels.csv", "stage_1_train_labels.csv")
IMAGE_FOLDERS = {"stage_2_train_labels.csv": "stage_2_train_images", "stage_1_train_labels.csv": "stage_1_train_images"}
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def list_rsna(data_dir) -> Listing:
    root = check_data_dir(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: not a folder (RSNA expects the folder holding stage_2_train_labels.csv)")
    found = find_file(root, LABEL_FILE_NAMES)
    if not found:
        raise UserError(f"--data-dir {root}: no {LABEL_FILE_NAMES[0]} there or up to two folders down "
                        "(the RSNA Pneumonia Detection Challenge layout)")
    csv_path = found[0]
    images_dir = csv_path.parent / IMAGE_FOLDERS[csv_path.name]
    header, rows = read_csv(csv_path)
    i_id = column_index(header, csv_path, "patientId")
    i_t = column_index(header, csv_path, "Target")
    targets: dict[str, set[int]] = {}
    problems: list[tuple[str, str]] = []
    bad_rows = 0
    for line, r in enumerate(rows, start=2):
        if len(r) <= max(i_id, i_t):
            problems.append((f"line {line}", f"{csv_path.name} line {line}: too few fields"))
            bad_rows += 1
            continue
        pid, t = r[i_id].strip(), r[i_t].strip()
        if t not in ("0", "1"):
            problems.append((pid or f"line {line}", f"{csv_path.name} line {line}: Target {t!r} is not 0 or 1"))
            bad_rows += 1
            continue
        targets.setdefault(pid, set()).add(int(t))
    ids, labels, patients = [], [], []
    counts = {"listed": len(targets), "missing": 0, "outside": 0, "skipped_rows": bad_rows, "unlisted": 0}
    for pid, ts in targets.items():
        rel = f"{images_dir.relative_to(root).as_posix()}/{pid}.dcm"
        if not _PLAIN.fullmatch(pid):
            problems.append((pid, OUTSIDE))
            counts["outside"] += 1
            continue
        if len(ts) > 1:
            problems.append((rel, f"{csv_path.name}: rows with Target 0 and 1 for one patient; left out"))
            counts["skipped_rows"] += 1
            continue
        why = file_problem(root / rel)
        if why is not None:
            problems.append((rel, f"listed in {csv_path.name} but not found" if why.startswith("no such")
                             else f"listed in {csv_path.name}: {why}"))
            counts["missing"] += 1
            continue
        ids.append(rel)
        labels.append(ts.pop())
        patients.append(pid)
    if images_dir.is_dir():
        listed = {f"{images_dir.relative_to(root).as_posix()}/{pid}.dcm" for pid in targets}
        unlisted = [f"{images_dir.relative_to(root).as_posix()}/{p}" for p in scan_images(images_dir, (".dcm",), root)]
        unlisted = [p for p in unlisted if p not in listed]
        problems += [(p, f"DICOM under --data-dir not listed in {csv_path.name}; ignored") for p in unlisted]
        counts["unlisted"] = len(unlisted)
    if not ids:
        raise UserError(f"--data-dir {root}: none of the {len(targets):,} patients in {csv_path.name} has its DICOM "
                        f"in {images_dir} (expected {IMAGE_FOLDERS[csv_path.name]}/<patientId>.dcm)")
    y = np.array(labels, np.int64)
    notes = [f"labels: {csv_path.relative_to(root).as_posix()} ({len(rows):,} rows, {len(targets):,} patients; "
             f"Target 1 = pneumonia, {int(y.sum()):,} of {len(y):,} images kept)",
             "one DICOM per patient: the split is patient-level (test and validation carved by patient; "
             "the challenge's test labels are not public)"]
    if counts["missing"] or counts["unlisted"] or counts["outside"]:
        notes.append(f"{counts['missing']:,} listed DICOMs missing, {counts['unlisted']:,} on disk but unlisted, "
                     f"{counts['outside']:,} patientIds leading {OUTSIDE} (left out; see the report)")
    return Listing(root, ids, y, np.array(patients, dtype=str), None, notes, problems, counts)
