"""NIH ChestX-ray14: the real label file, every CSV variant and layout, official and patient splits."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from chexvision.data import open_dataset
from chexvision.data.fake import make_nih
from chexvision.data.nih import list_nih, read_labels
from chexvision.data.splits import assign_splits
from chexvision.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_CSV = SHARED / "nih" / "Data_Entry_2017_v2020.csv.gz"
needs_real_csv = pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real NIH label file not present at {REAL_CSV}")


@pytest.fixture(scope="module")
def real():
    if not REAL_CSV.exists():
        pytest.skip(f"real NIH label file not present at {REAL_CSV}")
    names, labels, patients, views, skipped = read_labels(REAL_CSV, view="PA")
    return names, labels, patients, views, skipped


def _disjoint(patients, splits):
    groups = [set(patients[splits == s]) for s in ("train", "val", "test")]
    return not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


# -- the real label file -------------------------------------------------------------------------

@needs_real_csv
def test_real_label_counts(real):
    names, labels, patients, views, skipped = real
    assert len(names) == 112_120 and not skipped
    assert int((labels == 0).sum()) == 60_361
    assert len(np.unique(patients)) == 30_805
    assert set(np.unique(views)) == {"PA", "AP"}
    assert names[0] == "00000001_000.png" and labels[0] == 1 and patients[0] == "1"


@needs_real_csv
@pytest.mark.parametrize("seed", [0, 1])
def test_real_patient_split_is_disjoint_and_stratified(real, seed):
    _, labels, patients, _, _ = real
    splits = assign_splits(labels, patients, None, 0.1, 0.2, seed)
    assert _disjoint(patients, splits)
    share = {s: (splits == s).mean() for s in ("train", "val", "test")}
    assert abs(share["test"] - 0.2) < 0.005 and abs(share["val"] - 0.08) < 0.005
    rate = labels.mean()
    for s in ("train", "val", "test"):
        assert abs(labels[splits == s].mean() - rate) < 0.01, s


@needs_real_csv
def test_real_official_split_only_carves_val_from_trainval(real):
    _, labels, patients, _, _ = real
    # an official-like test set: patient-disjoint by construction (every 4th patient id)
    test_mask = np.array([int(p) % 4 == 0 for p in patients])
    splits = assign_splits(labels, patients, test_mask, 0.1, 0.2, 0)
    assert np.array_equal(splits == "test", test_mask)  # the official test set, untouched
    assert _disjoint(patients, splits)
    assert abs((splits == "val").sum() / (~test_mask).sum() - 0.1) < 0.005


@needs_real_csv
def test_real_split_is_deterministic_per_seed(real):
    _, labels, patients, _, _ = real
    a = assign_splits(labels, patients, None, 0.1, 0.2, 3)
    b = assign_splits(labels, patients, None, 0.1, 0.2, 3)
    c = assign_splits(labels, patients, None, 0.1, 0.2, 4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# -- fake folders in every real variant ----------------------------------------------------------

@pytest.mark.parametrize("variant", ["kaggle2017", "nihbox2017", "v2020"])
@pytest.mark.parametrize("layout", ["kaggle", "flat"])
def test_variants_and_layouts_list_the_same(tmp_path, variant, layout):
    info = make_nih(tmp_path, n=30, variant=variant, layout=layout)
    lst = list_nih(tmp_path)
    by_name = {p.rsplit("/", 1)[-1]: i for i, p in enumerate(lst.paths)}
    assert sorted(by_name) == sorted(info["names"])
    order = [by_name[n] for n in info["names"]]
    assert np.array_equal(lst.labels[order], info["labels"])
    assert list(lst.patients[order]) == list(info["patients"])  # "00000003" and "3" are one id
    assert set(np.array(info["names"])[lst.test_mask[order]]) == info["test"]
    assert all((tmp_path / p).is_file() for p in lst.paths)


def test_kaggle_csv_really_has_trailing_empty_column(tmp_path):
    info = make_nih(tmp_path, n=5, variant="kaggle2017")
    with open(info["label_file"], newline="") as f:
        header, first = next(csv.reader(f)), next(csv.reader(f))
    assert header[-1] == "" and first[-1] == "" and len(header) == 12


def test_gzipped_label_file_and_images_anywhere(tmp_path):
    import gzip

    info = make_nih(tmp_path / "deep" / "down", n=12, variant="v2020", official_lists=False)
    src = info["label_file"]
    (tmp_path / "Data_Entry_2017_v2020.csv.gz").write_bytes(gzip.compress(src.read_bytes()))
    src.unlink()
    lst = list_nih(tmp_path)
    assert len(lst) == 12 and lst.test_mask is None
    assert any("patient-level split" in n for n in lst.notes)


def test_missing_and_unlisted_are_counted_not_fatal(tmp_path):
    info = make_nih(tmp_path, n=20)
    (tmp_path / info["paths"][0]).unlink()
    (tmp_path / info["paths"][1]).unlink()
    shutil.copy(tmp_path / info["paths"][2], tmp_path / "images_001" / "images" / "99999999_000.png")
    lst = list_nih(tmp_path)
    assert len(lst) == 18 and lst.counts["missing"] == 2 and lst.counts["unlisted"] == 1
    reasons = dict(lst.problems)
    assert "not found" in reasons[info["names"][0]]
    assert "not listed" in reasons["images_001/images/99999999_000.png"]


def test_view_filter(tmp_path):
    info = make_nih(tmp_path, n=30)
    lst = list_nih(tmp_path, view="PA")
    assert len(lst) == int((info["views"] == "PA").sum())
    assert lst.counts["unlisted"] == 0  # AP images are listed, just filtered


def test_official_split_used_and_val_carved_from_trainval(tmp_path):
    info = make_nih(tmp_path, n=120)
    ds = open_dataset({"dataset": "nih", "data_dir": str(tmp_path), "cache": str(tmp_path / "c"), "workers": 1},
                      progress=False)
    names = np.array([p.rsplit("/", 1)[-1] for p in ds.paths])
    assert set(names[ds.splits == "test"]) == info["test"]
    assert _disjoint(ds.patients, ds.splits)
    assert "official" in ds.describe()


def test_patient_in_both_official_lists_leaves_trainval(tmp_path):
    info = make_nih(tmp_path, n=40)
    test_names = sorted(info["test"])
    patient = {n: p for n, p in zip(info["names"], info["patients"])}
    moved = next(n for n in info["names"] if n not in info["test"])  # a train/val image ...
    victim = next(n for n in info["names"] if n not in info["test"] and patient[n] != patient[moved])
    # ... whose patient we give a test image too
    (tmp_path / "test_list.txt").write_text("\n".join(test_names + [moved]) + "\n")
    lst = list_nih(tmp_path)
    names = [p.rsplit("/", 1)[-1] for p in lst.paths]
    same = [n for n in info["names"] if patient[n] == patient[moved] and n != moved]
    assert all(n not in names for n in same) and moved in names and victim in names
    assert lst.counts.get("patient_overlap", 0) == len(same)


def test_limit_is_stratified_subset(tmp_path):
    make_nih(tmp_path, n=120)
    full = list_nih(tmp_path)
    ds = open_dataset({"dataset": "nih", "data_dir": str(tmp_path), "cache": str(tmp_path / "c"), "limit": 60,
                       "workers": 1, "val_fraction": 0.2}, progress=False)
    assert len(ds) == 60
    assert abs(ds.labels.mean() - full.labels.mean()) < 0.03
    assert abs((ds.splits == "test").mean() - full.test_mask.mean()) < 0.03


# -- errors: one clear line each ----------------------------------------------------------------

def test_wrong_data_dir(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        list_nih(tmp_path / "nope")
    with pytest.raises(UserError, match="no NIH label file"):
        list_nih(tmp_path)


def test_csv_missing_required_column(tmp_path):
    info = make_nih(tmp_path, n=6, variant="v2020")
    text = info["label_file"].read_text().replace("Patient ID", "Patient")
    info["label_file"].write_text(text)
    with pytest.raises(UserError, match="missing column 'Patient ID'"):
        list_nih(tmp_path)


def test_no_image_found(tmp_path):
    info = make_nih(tmp_path, n=6)
    for p in info["paths"]:
        (tmp_path / p).unlink()
    with pytest.raises(UserError, match="none of the 6 images"):
        list_nih(tmp_path)
