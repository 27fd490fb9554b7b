"""The real NIH sample in ``../shared/data/nih-sample`` cut into patient-disjoint NIH folders.

``patient_parts(fractions, seed)`` splits the sample's patients at random (seeded) into parts;
``write_part(dst, names)`` lays one part out as Kaggle mounts NIH (``images_001/images/*.png``
plus ``Data_Entry_2017.csv`` holding only that part's rows, in the same 2017 layout). Images are
copied (about 35 MB for the whole sample), always into a temporary folder: the data never enter
the repository, no symlink leads out of the new folder (the data layer refuses those), and no
hard link could let a write reach the shared original.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "nih-sample"
LABELS = "Data_Entry_2017.csv"


def need_sample() -> Path:
    """The sample folder, or skip the calling test with the reason."""
    if not (SAMPLE / LABELS).is_file():
        pytest.skip(f"the real NIH sample is not here ({SAMPLE}; only the project's own checkout has ../shared)")
    return SAMPLE


def read_rows(src: Path = SAMPLE) -> tuple[list[str], list[list[str]]]:
    with open(src / LABELS, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def patient_parts(fractions: tuple[float, ...], seed: int = 0, src: Path = SAMPLE) -> list[list[str]]:
    """Image names of each part; the parts split the patients (never one patient in two parts)."""
    _, rows = read_rows(src)
    patients = sorted({r[3] for r in rows}, key=int)
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    edges = np.round(np.cumsum((0.0,) + tuple(fractions)) / sum(fractions) * len(order)).astype(int)
    parts = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chosen = set(order[lo:hi])
        parts.append([r[0] for r in rows if r[3] in chosen])
    return parts


def write_part(dst: Path, names: list[str], src: Path = SAMPLE) -> Path:
    """An NIH folder at ``dst`` with the images ``names`` and their label rows."""
    header, rows = read_rows(src)
    keep = set(names)
    images = dst / "images_001" / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open(dst / LABELS, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(r for r in rows if r[0] in keep)
    for name in names:
        shutil.copyfile(src / "images_001" / "images" / name, images / name)
    return dst
