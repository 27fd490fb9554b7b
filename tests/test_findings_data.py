"""--task findings labels: synthetic, NIH (incl. the real label file), CheXpert U-policies, folder CSV, cache."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from chexvision.data import open_dataset
from chexvision.data.chexpert import list_chexpert
from chexvision.data.fake import make_chexpert, make_nih
from chexvision.data.folder import list_folder
from chexvision.data.nih import finding_matrix, read_labels
from chexvision.data.synthetic import FINDINGS, make_synthetic
from chexvision.errors import UserError
from chexvision.tasks import (
    BINARY_TASK,
    CHEXPERT_FINDINGS,
    NIH_FINDINGS,
    SYNTHETIC_FINDINGS,
    Task,
    auto_pos_weight,
    loss_targets,
    make_task,
)

REAL_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "Data_Entry_2017_v2020.csv.gz"

# Per-finding image counts published with ChestX-ray14 (NIH / Kaggle data page "class counts"),
# over all 112,120 images; "No Finding" 60,361.
NIH_PUBLISHED_COUNTS = {
    "Atelectasis": 11559, "Cardiomegaly": 2776, "Effusion": 13317, "Infiltration": 19894, "Mass": 5782,
    "Nodule": 6331, "Pneumonia": 1431, "Pneumothorax": 5302, "Consolidation": 4667, "Edema": 2303,
    "Emphysema": 2516, "Fibrosis": 1686, "Pleural_Thickening": 3385, "Hernia": 227,
}


def test_task_descriptions():
    assert BINARY_TASK.n_outputs == 1 and BINARY_TASK.outputs == ("abnormal",)
    assert make_task("findings", "nih").outputs == NIH_FINDINGS and len(NIH_FINDINGS) == 14
    assert NIH_FINDINGS[0] == "Atelectasis" and NIH_FINDINGS[-1] == "Hernia"  # CheXNet's order
    assert len(CHEXPERT_FINDINGS) == 14
    assert make_task("findings", "synthetic").outputs == SYNTHETIC_FINDINGS == FINDINGS
    assert make_task("findings", "folder", ["a", "b"]).n_outputs == 2
    assert Task.from_dict(None) == BINARY_TASK
    assert Task.from_dict(make_task("findings", "nih").to_dict()) == make_task("findings", "nih")
    with pytest.raises(UserError):
        make_task("findings", "folder")
    with pytest.raises(UserError):
        make_task("triage", "nih")


def test_loss_targets_and_auto_pos_weight():
    y = np.array([[1, 0, -1], [0, 0, 1], [1, -1, 0]])
    t, w = loss_targets(y, np.float64)
    np.testing.assert_array_equal(t, [[1, 0, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(w, [[1, 1, 0], [1, 1, 1], [1, 0, 1]])
    assert loss_targets(np.array([[1, 0]]), np.float32)[1] is None  # nothing masked: the plain loss
    np.testing.assert_allclose(auto_pos_weight(y), [1 / 2, 1.0, 1 / 1])  # n_neg / n_pos over unmasked
    np.testing.assert_allclose(auto_pos_weight(np.zeros((3, 1))), [1.0])  # no positive: 1


def test_synthetic_findings_keep_the_binary_images_and_mark_abnormal_ones():
    a = make_synthetic(150, 24, seed=5)
    b = make_synthetic(150, 24, seed=5, with_findings=True)
    for x, y in zip(a, b[:4]):
        np.testing.assert_array_equal(x, y)
    f = b[4]
    assert f.shape == (150, 3) and set(np.unique(f)) <= {0, 1}
    np.testing.assert_array_equal(f.any(axis=1).astype(np.int64), b[1])  # abnormal <=> some finding
    assert (f.sum(axis=0) > 0).all()


def test_synthetic_dataset_targets():
    ds = open_dataset({"dataset": "synthetic", "synthetic_size": 300, "image_size": 16, "task": "findings"},
                      progress=False)
    assert ds.task.outputs == SYNTHETIC_FINDINGS and ds.targets.shape == (300, 3)
    text = ds.describe()  # what preprocess / train print: each finding's prevalence per split
    assert "cardiomegaly" in text and "masked" in text
    binary = open_dataset({"dataset": "synthetic", "synthetic_size": 300, "image_size": 16}, progress=False)
    assert binary.task == BINARY_TASK
    np.testing.assert_array_equal(binary.targets[:, 0], binary.labels)
    np.testing.assert_array_equal(binary.splits, ds.splits)  # same split either way


def test_nih_finding_matrix_known_rows():
    f = finding_matrix(["No Finding", "Cardiomegaly|Emphysema", "Hernia", "Effusion|Infiltration|Mass"])
    assert f.shape == (4, 14)
    assert not f[0].any()
    assert [NIH_FINDINGS[j] for j in np.flatnonzero(f[1])] == ["Cardiomegaly", "Emphysema"]
    assert [NIH_FINDINGS[j] for j in np.flatnonzero(f[3])] == ["Effusion", "Infiltration", "Mass"]
    with pytest.raises(UserError, match="unknown NIH finding 'Covid'"):
        finding_matrix(["Covid"])


@pytest.mark.skipif(not REAL_CSV.is_file(), reason=f"real NIH label file absent ({REAL_CSV})")
def test_nih_real_label_file_prevalence_equals_the_published_counts():
    names, labels, _, _, skipped, f = read_labels(REAL_CSV, with_findings=True)
    assert len(names) == 112_120 and not skipped
    assert dict(zip(NIH_FINDINGS, f.sum(axis=0).tolist())) == NIH_PUBLISHED_COUNTS
    assert int((f.sum(axis=1) == 0).sum()) == 60_361  # "No Finding" rows are all zeros
    np.testing.assert_array_equal(f.any(axis=1).astype(np.int64), labels)
    row = dict(zip(names, f))
    # known rows of the file: 00000001_000 "Cardiomegaly", 00000001_001 "Cardiomegaly|Emphysema",
    # 00000001_002 "Cardiomegaly|Effusion"
    on = lambda n: [NIH_FINDINGS[j] for j in np.flatnonzero(row[n])]  # noqa: E731
    assert on("00000001_000.png") == ["Cardiomegaly"]
    assert on("00000001_001.png") == ["Cardiomegaly", "Emphysema"]
    assert on("00000001_002.png") == ["Cardiomegaly", "Effusion"]


def test_nih_findings_listing_and_cache_index(tmp_path):
    info = make_nih(tmp_path / "nih", n=40)
    cfg = {"dataset": "nih", "data_dir": str(tmp_path / "nih"), "cache": str(tmp_path / "cache"), "image_size": 16,
           "task": "findings", "workers": 1}
    ds = open_dataset(cfg, progress=False)
    assert ds.task.outputs == NIH_FINDINGS and ds.targets.shape == (len(ds), 14)
    np.testing.assert_array_equal(ds.targets.any(axis=1).astype(np.int64), ds.labels)
    with open(tmp_path / "cache" / "index.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "label", "patient", "split", *NIH_FINDINGS]
    assert all(set(r[4:]) <= {"0", "1"} for r in rows[1:])
    # a binary cache of the same data keeps its 4 columns and lives elsewhere by default
    assert len(info["names"]) == 40
    binary = open_dataset(dict(cfg, task="binary", cache=str(tmp_path / "cache_b")), progress=False)
    with open(tmp_path / "cache_b" / "index.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["path", "label", "patient", "split"]
    np.testing.assert_array_equal(binary.labels, ds.labels)
    with pytest.raises(UserError, match="other settings"):  # the findings cache refuses a binary open
        open_dataset(dict(cfg, task="binary"), progress=False)


@pytest.mark.parametrize("policy, uncertain_value", [("ignore", -1), ("positive", 1), ("negative", 0)])
def test_chexpert_uncertainty_policies_per_finding(tmp_path, policy, uncertain_value):
    info = make_chexpert(tmp_path, n_train=30, n_valid=10)
    lst = list_chexpert(tmp_path, uncertain=policy, task="findings")
    assert lst.finding_names == CHEXPERT_FINDINGS
    assert len(lst) == 40  # every row kept (binary U-Ignore drops uncertain-only images)
    edema = CHEXPERT_FINDINGS.index("Edema")
    by_path = {p: r for p, r in zip(lst.paths, lst.findings)}
    for path, unc in zip(info["train"]["paths"], info["train"]["uncertain"]):
        row = by_path[[p for p in by_path if p.endswith(path.split("/", 1)[1])][0]]
        if unc:  # Edema -1.0 and Cardiomegaly 0.0, the rest blank
            assert row[edema] == uncertain_value
            assert row[CHEXPERT_FINDINGS.index("Cardiomegaly")] == 0
            assert row.sum() == uncertain_value  # blanks are 0
    assert len(list_chexpert(tmp_path, uncertain="ignore")) < 40  # the binary task still leaves them out


def test_folder_csv_findings(tmp_path):
    images = make_synthetic(12, 16, seed=1)[0]
    from PIL import Image

    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"im{i}.png")
    lines = ["path,patient,Nodule,Effusion"] + [f"im{i}.png,p{i // 2},{i % 2},{'' if i == 3 else (i // 3) % 2}"
                                                for i in range(12)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    lst = list_folder(tmp_path, task="findings")
    assert lst.finding_names == ("Nodule", "Effusion")
    assert lst.findings.shape == (12, 2) and lst.findings[3, 1] == -1
    np.testing.assert_array_equal(lst.labels, (lst.findings == 1).any(axis=1))
    (tmp_path / "labels.csv").write_text("path,Nodule\nim0.png,2\n")
    with pytest.raises(UserError, match="Nodule = '2'"):
        list_folder(tmp_path, task="findings")
    (tmp_path / "labels.csv").write_text("path,patient\nim0.png,p\n")
    with pytest.raises(UserError, match="one 0/1 column per finding"):
        list_folder(tmp_path, task="findings")


def test_rsna_has_no_findings(tmp_path):
    with pytest.raises(UserError, match="rsna has one label"):
        open_dataset({"dataset": "rsna", "data_dir": str(tmp_path), "task": "findings"}, progress=False)
