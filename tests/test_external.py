"""External validation: ``evaluate --checkpoint RUN --dataset D --data-dir DIR``.

A run is scored on every image of another data set at its saved threshold (never re-chosen),
with the full metrics, plots, per-image scores and a REPORT.md naming the run and the data. The
last test trains on one part of the real NIH sample and validates on patients it never saw.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from chexvision.cli import main
from chexvision.data.fake import make_nih
from chexvision.external import ARTIFACTS, SCHEMA

from .real_nih import need_sample, patient_parts, write_part

TINY = ["--hidden", "32", "--epochs", "2", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny MLP trained (and evaluated) on one fake NIH folder, and a second, disjoint folder."""
    root = tmp_path_factory.mktemp("external")
    make_nih(root / "nihA", n=160, seed=1)
    make_nih(root / "nihB", n=90, seed=2)
    run = root / "run"
    assert main(["train", "--dataset", "nih", "--data-dir", str(root / "nihA"), "--cache", str(root / "cacheA"),
                 "--out", str(run), *TINY]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--n-boot", "100", "--no-progress"]) == 0
    return root, run


def _external(run, data_dir, *extra):
    return main(["evaluate", "--checkpoint", str(run), "--dataset", "nih", "--data-dir", str(data_dir),
                 "--n-boot", "100", "--no-progress", *extra])


def test_scores_every_image_at_the_saved_threshold(setup, capsys):
    root, run = setup
    assert _external(run, root / "nihB", "--cache", str(root / "cacheB")) == 0
    out = run / "external-nih"
    assert sorted(p.name for p in out.iterdir()) == sorted(ARTIFACTS)
    m = json.loads((out / "metrics.json").read_text())
    internal = json.loads((run / "metrics.json").read_text())
    assert m["schema"] == SCHEMA
    # the run's threshold, chosen on its own validation split, unchanged
    assert m["threshold"]["value"] == internal["threshold"]["value"]
    ex = m["external"]
    assert ex["n"] == 90  # every image of the external folder is test: no split
    scores, labels = np.load(out / "external_scores.npy"), np.load(out / "external_labels.npy")
    assert scores.shape == labels.shape == (90,)
    pred = scores >= m["threshold"]["value"]
    assert [ex["tn"], ex["fp"], ex["fn"], ex["tp"]] == [int(np.sum(~pred & (labels == 0))),
                                                        int(np.sum(pred & (labels == 0))),
                                                        int(np.sum(~pred & (labels == 1))),
                                                        int(np.sum(pred & (labels == 1)))]
    lo, hi = ex["roc_auc_ci95"]
    assert lo <= ex["roc_auc"] <= hi
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 90 and all((root / "nihB" / r["path"]).is_file() for r in rows)
    report = (out / "REPORT.md").read_text()
    assert "external evaluation" in report and str(run) in report and str(root / "nihB") in report
    assert "the run's own test split" in report  # the internal figures beside the external ones
    assert "threshold" in capsys.readouterr().out


def test_other_track_and_rerun_into_our_own_folder(setup):
    root, run = setup
    out = root / "ext-torch"
    assert _external(run, root / "nihB", "--cache", str(root / "cacheB"), "--out", str(out)) == 0
    first = np.load(out / "external_scores.npy")
    assert _external(run, root / "nihB", "--cache", str(root / "cacheB"), "--out", str(out), "--track", "torch") == 0
    np.testing.assert_allclose(np.load(out / "external_scores.npy"), first, rtol=1e-5, atol=1e-6)


def test_refuses_what_would_bias_or_overwrite(setup, capsys):
    root, run = setup
    # a threshold chosen on the external data would make its numbers optimistic
    assert _external(run, root / "nihB", "--threshold", "youden", "--out", str(root / "x")) == 2
    assert "threshold" in capsys.readouterr().err
    # a folder holding someone else's files, or the run's own report, is left alone
    mine = root / "mine"
    mine.mkdir()
    (mine / "REPORT.md").write_text("my notes")
    for out in (mine, run):
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        assert _external(run, root / "nihB", "--cache", str(root / "cacheB"), "--out", str(out)) == 2
        assert "choose a new or empty folder" in capsys.readouterr().err
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert (mine / "REPORT.md").read_text() == "my notes"
    # an external set with one class has no ROC-AUC
    one = root / "one-class"
    make_nih(one, n=30, seed=3)
    rows = (one / "Data_Entry_2017.csv").read_text().splitlines()
    keep = [rows[0]] + [r for r in rows[1:] if ",No Finding," in r]
    (one / "Data_Entry_2017.csv").write_text("\n".join(keep) + "\n")
    assert _external(run, one, "--cache", str(root / "cache-one"), "--out", str(root / "o")) == 2
    assert "both classes" in capsys.readouterr().err
    # --dataset nih without its folder
    assert main(["evaluate", "--checkpoint", str(run), "--dataset", "nih", "--no-progress"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_real_nih_trained_on_some_patients_validated_on_others(tmp_path):
    """Train on 70 % of the real sample's patients, validate externally on the other 30 %."""
    need_sample()
    part_a, part_b = patient_parts((0.7, 0.3), seed=0)
    a, b = write_part(tmp_path / "nihA", part_a), write_part(tmp_path / "nihB", part_b)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "nih", "--data-dir", str(a), "--cache", str(tmp_path / "cacheA"),
                 "--out", str(run), "--epochs", "4", "--hidden", "128", "--no-progress"]) == 0
    assert _external(run, b, "--cache", str(tmp_path / "cacheB")) == 0
    m = json.loads((run / "external-nih" / "metrics.json").read_text())
    assert m["external"]["n"] == len(part_b)
    assert m["about"]["patients"] == len({n.split("_")[0] for n in part_b})
    meta = json.loads((run / "best" / "meta.json").read_text())
    assert m["threshold"]["value"] == meta["threshold"]["value"]  # never evaluated: the training threshold
    # the real signal transfers to patients the run never saw (pneumonia vs no finding)
    assert m["external"]["roc_auc"] > 0.65


def test_training_folder_is_flagged_as_not_external(setup):
    root, run = setup
    out = root / "same-folder"
    assert _external(run, root / "nihA", "--cache", str(root / "cacheA"), "--out", str(out)) == 0
    assert "WARNING: this is the folder the run was trained on" in (out / "REPORT.md").read_text()
