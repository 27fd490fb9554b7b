"""NIH ChestX-ray14 in the layouts users have: the Kaggle copy and the NIH box download.

* Images: ``images_001/images/*.png`` … ``images_012/images/*.png`` (Kaggle), a flat
  ``images/`` folder (NIH box), or anywhere else under ``--data-dir``: every ``*.png`` found is
  matched to the label file by its file name. The scan never follows a symlinked folder out of
  ``--data-dir`` (nor round a loop); an ``Image Index`` that is a path leading out of it (``../``,
  absolute) is left out as "outside the data folder".
* Labels: ``Data_Entry_2017*.csv`` (also ``.csv.gz``) anywhere up to two folders down, in any of
  its real variants: Kaggle 2017 (trailing empty column, integer ages), the NIH box 2017 (ages
  like ``058Y``, zero-padded patient ids) and the v2020 revision. Only ``Image Index``,
  ``Finding Labels`` and ``Patient ID`` are required (``View Position`` with ``--view``).
* Label: ``Finding Labels`` == "No Finding" -> 0 (normal), anything else -> 1 (abnormal).
  With ``task="findings"`` also one 0/1 column per finding of ``NIH_FINDINGS`` (the 14 labels
  in CheXNet's order) from the pipe-separated ``Finding Labels``; "No Finding" is all zeros.
* Patient: ``Patient ID`` with leading zeros dropped (``00000001`` and ``1`` are one patient).
* Split: official ``test_list.txt`` is the test set and validation is carved from
  ``train_val_list.txt`` by patient; without the lists, a patient-level split of everything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .listing import (
    OUTSIDE,
    Listing,
    check_data_dir,
    column_index,
    drop_test_patients_from_trainval,
    find_file,
    inside,
    read_csv,
    scan_images,
)

LABEL_FILE_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv.gz",
                    "Data_Entry_2017_v2020.csv.gz")


def finding_matrix(finding_labels) -> np.ndarray:
    """``Finding Labels`` strings ("Effusion|Mass", "No Finding") -> (N, 14) int64 multi-hot in
    ``NIH_FINDINGS`` order. A name outside the 14 (and "No Finding") is a UserError naming it."""
    from ..tasks import NIH_FINDINGS

    col = {n: j for j, n in enumerate(NIH_FINDINGS)}
    out = np.zeros((len(finding_labels), len(NIH_FINDINGS)), np.int64)
    for i, text in enumerate(finding_labels):
        for name in text.split("|"):
            name = name.strip()
            if name == "No Finding" or not name:
                continue
            if name not in col:
                raise UserError(f"unknown NIH finding {name!r} in Finding Labels {text!r} "
                                f"(expected some of {', '.join(NIH_FINDINGS)} or 'No Finding')")
            out[i, col[name]] = 1
    return out


def normalise_patient(pid: str) -> str:
    pid = pid.strip()
    return str(int(pid)) if pid.isdigit() else pid


def find_label_file(root: Path) -> Path:
    found = find_file(root, LABEL_FILE_NAMES)
    if not found:
        raise UserError(
            f"--data-dir {root}: no NIH label file ({' or '.join(LABEL_FILE_NAMES[:2])}) found there "
            "or up to two folders down"
        )
    return found[0]


def read_labels(csv_path: Path, view: str = "all", with_findings: bool = False):
    """Parse a ``Data_Entry_2017*.csv``.

    Returns:
        names (list[str]), labels (N,) int64, patients (N,) str, views (N,) str, skipped
        (list of (name, reason) for unusable rows: duplicates, empty labels, short rows);
        with ``with_findings`` also the (N, 14) multi-hot findings (``finding_matrix``).
    """
    header, rows = read_csv(csv_path)
    i_name = column_index(header, csv_path, "Image Index")
    i_find = column_index(header, csv_path, "Finding Labels")
    i_pat = column_index(header, csv_path, "Patient ID")
    i_view = column_index(header, csv_path, "View Position", " (needed by --view)") if view != "all" else None
    need = max(i for i in (i_name, i_find, i_pat, i_view) if i is not None) + 1
    names, labels, patients, views, skipped, texts = [], [], [], [], [], []
    seen = set()
    for line, r in enumerate(rows, start=2):
        if len(r) < need:
            skipped.append((r[0].strip() if r else f"line {line}", f"{csv_path.name} line {line}: too few fields"))
            continue
        name, finding, pid = r[i_name].strip(), r[i_find].strip(), r[i_pat]
        if not finding or not pid.strip():
            skipped.append((name, f"{csv_path.name} line {line}: empty Finding Labels or Patient ID"))
            continue
        if name in seen:
            skipped.append((name, f"{csv_path.name} line {line}: duplicate Image Index, first row kept"))
            continue
        seen.add(name)
        names.append(name)
        labels.append(0 if finding == "No Finding" else 1)
        texts.append(finding)
        patients.append(normalise_patient(pid))
        views.append(r[i_view].strip().upper() if i_view is not None else "")
    out = names, np.array(labels, np.int64), np.array(patients, dtype=str), np.array(views, dtype=str), skipped
    return (*out, finding_matrix(texts)) if with_findings else out


def _read_list(path: Path) -> set[str]:
    try:
        return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def list_nih(data_dir, view: str = "all", task: str = "binary") -> Listing:
    """Match the label file to the PNGs on disk; see the module docstring for the rules."""
    root = check_data_dir(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: not a folder (NIH expects the folder holding Data_Entry_2017.csv)")
    csv_path = find_label_file(root)
    names, labels, patients, views, skipped, *findings = read_labels(csv_path, view, task == "findings")
    findings_of = dict(zip(names, findings[0])) if findings else {}  # first row of a name, as read_labels
    notes = [f"labels: {csv_path.relative_to(root).as_posix()} ({len(names):,} images of "
             f"{len(np.unique(patients)):,} patients)"]
    problems = list(skipped)
    if skipped:
        notes.append(f"{len(skipped):,} unusable rows in {csv_path.name} skipped (see the report)")

    escapes = np.array([("/" in n or "\\" in n) and not inside(root, n.replace("\\", "/")) for n in names], bool)
    if escapes.any():  # a file name is all the NIH label file may hold; a path out is never matched
        problems += [(names[i], OUTSIDE) for i in np.flatnonzero(escapes)]
        notes.append(f"{int(escapes.sum()):,} Image Index values lead {OUTSIDE}; left out")
        names = [n for n, e in zip(names, escapes) if not e]
        labels, patients, views = labels[~escapes], patients[~escapes], views[~escapes]

    if view != "all":
        keep = views == view.upper()
        notes.append(f"--view {view}: {int(keep.sum()):,} of {len(names):,} images kept")
        names = [n for n, k in zip(names, keep) if k]
        labels, patients = labels[keep], patients[keep]

    on_disk = scan_images(root, (".png",))
    by_name: dict[str, str] = {}
    for rel in on_disk:
        name = rel.rsplit("/", 1)[-1]
        if name in by_name:
            problems.append((rel, f"duplicate file name, {by_name[name]} used instead"))
        else:
            by_name[name] = rel
    listed = set(names)
    unlisted = [rel for name, rel in by_name.items() if name not in listed]
    found = np.array([n in by_name for n in names], dtype=bool)
    missing = [n for n, f in zip(names, found) if not f]
    problems += [(n, f"listed in {csv_path.name} but not found under --data-dir") for n in missing]
    # images excluded by --view are listed, so they are not "unlisted"; only unknown names are
    all_names = set(read_labels(csv_path)[0]) if view != "all" else listed
    unlisted = [rel for rel in unlisted if rel.rsplit("/", 1)[-1] not in all_names]
    problems += [(rel, f"PNG under --data-dir not listed in {csv_path.name}; ignored") for rel in unlisted]
    if missing or unlisted:
        notes.append(f"{len(missing):,} listed images missing on disk, {len(unlisted):,} PNGs on disk not in "
                     f"{csv_path.name} (both left out; see the report)")
    if not found.any():
        raise UserError(
            f"--data-dir {root}: none of the {len(names):,} images listed in {csv_path.name} were found "
            f"({len(on_disk):,} PNGs on disk; expected images_*/images/*.png or images/*.png)"
        )
    rows = np.flatnonzero(found)
    paths = [by_name[names[i]] for i in rows]
    labels, patients = labels[rows], patients[rows]
    names_kept = [names[i] for i in rows]

    test_mask = None
    lists = {n: find_file(root, (n,)) for n in ("train_val_list.txt", "test_list.txt")}
    if lists["test_list.txt"] or lists["train_val_list.txt"]:
        test_set = _read_list(lists["test_list.txt"][0]) if lists["test_list.txt"] else None
        tv_set = _read_list(lists["train_val_list.txt"][0]) if lists["train_val_list.txt"] else None
        if test_set is None:
            test_mask = np.array([n not in tv_set for n in names_kept])
            notes.append("official split: train_val_list.txt found, no test_list.txt: images not in "
                         "train_val_list.txt form the test set")
        else:
            test_mask = np.array([n in test_set for n in names_kept])
            if tv_set is not None:
                neither = ~test_mask & np.array([n not in tv_set for n in names_kept])
                if neither.any():
                    problems += [(paths[i], "in neither train_val_list.txt nor test_list.txt; left out")
                                 for i in np.flatnonzero(neither)]
                    notes.append(f"{int(neither.sum()):,} images in neither official list left out")
                    keep = ~neither
                    paths = [p for p, k in zip(paths, keep) if k]
                    labels, patients, test_mask = labels[keep], patients[keep], test_mask[keep]
                notes.append("official split: test = test_list.txt; validation carved by patient from "
                             "train_val_list.txt")
            else:
                notes.append("official split: test = test_list.txt (no train_val_list.txt: all other "
                             "images are train/val); validation carved by patient")
    else:
        notes.append("no train_val_list.txt / test_list.txt under --data-dir: patient-level split of all "
                     "images (test and validation carved by Patient ID)")
    listing = Listing(root, paths, labels, patients, test_mask, notes, problems,
                      {"listed": len(names) + int(escapes.sum()), "missing": len(missing), "unlisted": len(unlisted),
                       "skipped_rows": len(skipped), "outside": int(escapes.sum())})
    if task == "findings":
        from ..tasks import NIH_FINDINGS

        listing.findings = np.array([findings_of[p.rsplit("/", 1)[-1]] for p in paths], np.int64).reshape(
            len(paths), len(NIH_FINDINGS))
        listing.finding_names = NIH_FINDINGS
    return drop_test_patients_from_trainval(listing, "test_list.txt")
