"""CheXpert (labels, uncertainty policy, filters, split mapping) and the folder dataset."""

from __future__ import annotations

import numpy as np
import pytest

from chexvision.data import open_dataset
from chexvision.data.chexpert import list_chexpert
from chexvision.data.fake import make_chexpert, make_folder
from chexvision.data.folder import list_folder
from chexvision.errors import UserError


@pytest.fixture(scope="module")
def chex(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    return root, make_chexpert(root, n_train=40, n_valid=16)


def _expected(info, split, policy):
    out = {}
    for p, y, unc in zip(info[split]["paths"], info[split]["label"], info[split]["uncertain"]):
        if unc:
            if policy == "ignore":
                continue
            y = 1 if policy == "positive" else 0
        out[p.split("/", 1)[1]] = y
    return out


@pytest.mark.parametrize("policy", ["ignore", "positive", "negative"])
def test_labels_under_each_uncertainty_policy(chex, policy):
    root, info = chex
    lst = list_chexpert(root, uncertain=policy)
    got = {p.split("/", 1)[1]: int(y) for p, y in zip(lst.paths, lst.labels)}
    want = {**_expected(info, "train", policy), **_expected(info, "valid", policy)}
    assert got == want
    assert any(f"--uncertain {policy}" in n for n in lst.notes)


def test_valid_csv_is_the_test_set_and_patients_come_from_paths(chex):
    root, info = chex
    lst = list_chexpert(root)
    test_paths = {p for p, t in zip(lst.paths, lst.test_mask) if t}
    assert test_paths == {f"CheXpert-v1.0-small/{p.split('/', 1)[1]}" for p in info["valid"]["paths"]}
    assert all(p.startswith("patient") for p in lst.patients)
    assert all(pat in path for pat, path in zip(lst.patients, lst.paths))


def test_data_dir_may_be_the_chexpert_folder_itself(chex):
    root, _ = chex
    a, b = list_chexpert(root), list_chexpert(root / "CheXpert-v1.0-small")
    assert np.array_equal(a.labels, b.labels) and len(a) == len(b)
    assert all((b.root / p).is_file() for p in b.paths)


def test_frontal_only_and_view(chex):
    root, info = chex
    fr = list_chexpert(root, frontal_only=True)
    assert all("frontal" in p for p in fr.paths) and len(fr) < len(list_chexpert(root))
    pa = list_chexpert(root, view="PA")
    assert len(pa) > 0 and all("frontal" in p for p in pa.paths)


def test_open_dataset_split_mapping(chex, tmp_path):
    root, info = chex
    ds = open_dataset({"dataset": "chexpert", "data_dir": str(root), "cache": str(tmp_path / "c"), "workers": 1,
                       "val_fraction": 0.25}, progress=False)
    assert (ds.splits == "test").sum() == len(info["valid"]["paths"])
    assert "valid.csv is the untouched test set" in ds.describe()
    groups = [set(ds.patients[ds.splits == s]) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_chexpert_errors(tmp_path, chex):
    with pytest.raises(UserError, match="no CheXpert train.csv"):
        list_chexpert(tmp_path)
    root, _ = chex
    with pytest.raises(UserError, match="--uncertain must be one of"):
        list_chexpert(root, uncertain="maybe")
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "train.csv").write_text("Path,Sex,Cardiomegaly\nx.jpg,Male,1.0\n")
    with pytest.raises(UserError, match="missing column 'No Finding'"):
        list_chexpert(bad)


# -- folder ---------------------------------------------------------------------------------------

def test_folder_subfolders(tmp_path):
    info = make_folder(tmp_path, n=20)
    lst = list_folder(tmp_path)
    got = dict(zip(lst.paths, lst.labels.tolist()))
    assert got == dict(zip(info["paths"], info["labels"].tolist()))
    assert lst.test_mask is None and any("own patient" in n for n in lst.notes)


@pytest.mark.parametrize("as_file", [False, True], ids=["dir-with-labels.csv", "csv-path"])
def test_folder_csv_with_patients(tmp_path, as_file):
    info = make_folder(tmp_path, n=20, mode="csv")
    lst = list_folder(tmp_path / "labels.csv" if as_file else tmp_path)
    assert lst.paths == info["paths"]
    assert np.array_equal(lst.labels, info["labels"]) and np.array_equal(lst.patients, info["patients"])


def test_folder_csv_errors(tmp_path):
    (tmp_path / "labels.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(UserError, match="missing column 'path'"):
        list_folder(tmp_path)
    make_folder(tmp_path / "x", n=3, mode="csv")
    (tmp_path / "x" / "labels.csv").write_text("path,label\nimages/img_0000.png,maybe\n")
    with pytest.raises(UserError, match="line 2: label 'maybe'"):
        list_folder(tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="expected normal/ and abnormal/"):
        list_folder(tmp_path / "empty")


def test_one_class_split_is_a_user_error(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "abnormal").mkdir()
    info = make_folder(tmp_path / "src", n=30)
    for p, y in zip(info["paths"], info["labels"]):  # every image filed as normal
        (tmp_path / "src" / p).rename(tmp_path / "normal" / f"{y}_{p.replace('/', '_')}")
    (tmp_path / "abnormal" / "only.png").write_bytes((tmp_path / "normal").iterdir().__next__().read_bytes())
    with pytest.raises(UserError, match="has only normal images"):
        open_dataset({"dataset": "folder", "data_dir": str(tmp_path), "cache": str(tmp_path / "c"), "workers": 1},
                     progress=False)
