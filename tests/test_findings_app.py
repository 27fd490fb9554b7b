"""--task findings end to end: train (both tracks), evaluate, predict; and a run that learns every finding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexvision.cli import main
from chexvision.data.synthetic import FINDINGS, make_synthetic

TINY = ["--task", "findings", "--synthetic-size", "300", "--image-size", "16", "--hidden", "16", "--epochs", "2",
        "--batch-size", "32", "--no-progress", "--pos-weight", "auto"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    out = {}
    for track in ("numpy", "torch"):
        d = root / track
        assert main(["train", *TINY, "--track", track, "--out", str(d)]) == 0
        out[track] = d
    return out


@pytest.mark.parametrize("track", ["numpy", "torch"])
def test_train_writes_a_three_output_model_and_per_finding_thresholds(runs, track):
    d = runs[track]
    cfg = json.loads((d / "best" / "config.json").read_text())
    assert cfg["task"] == {"name": "findings", "outputs": list(FINDINGS)}
    assert cfg["model"]["out_features"] == 3 and cfg["data"]["task"] == "findings"
    meta = json.loads((d / "best" / "meta.json").read_text())
    assert len(meta["threshold"]["value"]) == 3
    hist = json.loads((d / "history.json").read_text())
    assert all(isinstance(h["threshold"], list) and 0 <= h["val_auc"] <= 1 for h in hist)
    cfg_torch = json.loads((d / "best" / "config.json").read_text())["train"]
    assert cfg_torch["pos_weight"] == "auto"


def test_evaluate_writes_per_finding_metrics_and_scores(runs, capsys):
    d = runs["numpy"]
    assert main(["evaluate", "--checkpoint", str(d), "--n-boot", "50", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "macro mean test AUC" in text and "cardiomegaly" in text
    m = json.loads((d / "metrics.json").read_text())
    assert m["task"]["outputs"] == list(FINDINGS)
    assert set(m["test"]["outputs"]) == set(FINDINGS)
    for name in FINDINGS:
        o = m["test"]["outputs"][name]
        for key in ("roc_auc", "roc_auc_ci", "average_precision", "prevalence", "threshold", "sensitivity",
                    "specificity"):
            assert key in o
        assert o["threshold"] == m["threshold"]["values"][name]  # chosen on validation, applied to test
    s, y = np.load(d / "test_scores.npy"), np.load(d / "test_labels.npy")
    assert s.shape == y.shape and s.shape[1] == 3 and np.isfinite(s).all()
    assert (d / "roc_grid.png").stat().st_size > 1000
    report = (d / "REPORT.md").read_text()
    assert "| opacity |" in report and "Macro mean test ROC-AUC" in report
    assert "CheXNet" not in report  # published NIH numbers only beside NIH findings
    # the torch track scores the numpy checkpoint to float tolerance
    assert main(["evaluate", "--checkpoint", str(d), "--track", "torch", "--n-boot", "50", "--no-progress",
                 "--out", str(d / "torch_eval")]) == 0
    np.testing.assert_allclose(np.load(d / "torch_eval" / "test_scores.npy"), s, rtol=1e-4, atol=1e-5)


def test_predict_prints_and_writes_every_finding(runs, tmp_path, capsys):
    from PIL import Image

    for i, im in enumerate(make_synthetic(2, 16, seed=9)[0]):
        Image.fromarray(im).save(tmp_path / f"x{i}.png")
    out = tmp_path / "p.csv"
    rc = main(["predict", "--checkpoint", str(runs["torch"]), "--image", str(tmp_path / "x0.png"),
               str(tmp_path / "x1.png"), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("  opacity ") == 2 and "threshold" in text  # one line per image
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["path", *[f"p_{n}" for n in FINDINGS], *[f"flag_{n}" for n in FINDINGS]]
    assert main(["predict", "--checkpoint", str(runs["torch"]), "--image", str(tmp_path / "x0.png"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]["probabilities"]) == set(FINDINGS)
    flags = rows[0]["flags"]
    assert all(flags[n] == int(rows[0]["probabilities"][n] >= rows[0]["thresholds"][n]) for n in FINDINGS)


@pytest.mark.slow
def test_synthetic_findings_run_learns_every_finding(tmp_path, capsys):
    """1,500 synthetic images at 32 px, a small MLP, 12 epochs: every planted finding well above chance."""
    d = tmp_path / "run"
    assert main(["train", "--task", "findings", "--synthetic-size", "1500", "--image-size", "32", "--hidden",
                 "256,64", "--epochs", "12", "--lr", "2e-3", "--pos-weight", "auto", "--no-progress",
                 "--out", str(d)]) == 0
    assert main(["evaluate", "--checkpoint", str(d), "--n-boot", "200", "--no-progress"]) == 0
    m = json.loads((d / "metrics.json").read_text())
    aucs = {n: m["test"]["outputs"][n]["roc_auc"] for n in FINDINGS}
    assert all(a > 0.7 for a in aucs.values()), aucs  # measured: 0.997 / 0.855 / 0.774
    assert m["test"]["macro_auc"] > 0.8, aucs


def test_compare_runs_the_findings_model_in_lockstep(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--task", "findings", "--synthetic-size", "200", "--image-size", "16", "--hidden", "8",
                 "--steps", "3", "--dtype", "float64", "--out", str(out)]) == 0
    d = json.loads((out / "compare.json").read_text())
    assert d["config"]["spec"]["out_features"] == 3
    assert "every tensor stays within" in capsys.readouterr().out


def test_external_validation_refuses_a_findings_run(runs, tmp_path, capsys):
    rc = main(["evaluate", "--checkpoint", str(runs["numpy"]), "--dataset", "synthetic", "--data-dir", str(tmp_path)])
    assert rc == 2
    assert "--task findings" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["chexpert", "nih"])
def test_findings_on_real_layouts_train_and_evaluate(tmp_path, dataset, capsys):
    """Fake CheXpert (U-Ignore masks) and NIH folders: train --task findings, evaluate, masked labels kept as -1."""
    from chexvision.data.fake import make_chexpert, make_nih
    from chexvision.tasks import CHEXPERT_FINDINGS, NIH_FINDINGS

    if dataset == "chexpert":
        make_chexpert(tmp_path / "data", n_train=80, n_valid=24, image_size=32)
    else:
        make_nih(tmp_path / "data", n=100, image_size=32)
    d = tmp_path / "run"
    args = ["train", "--task", "findings", "--dataset", dataset, "--data-dir", str(tmp_path / "data"), "--cache",
            str(tmp_path / "cache"), "--image-size", "16", "--hidden", "8", "--epochs", "1", "--no-progress",
            "--workers", "1", "--out", str(d), "--val-fraction", "0.3"]
    assert main(args) == 0
    assert main(["evaluate", "--checkpoint", str(d), "--n-boot", "20", "--no-progress"]) == 0
    names = CHEXPERT_FINDINGS if dataset == "chexpert" else NIH_FINDINGS
    m = json.loads((d / "metrics.json").read_text())
    assert list(m["val"]["outputs"]) == list(names)
    y = np.load(d / "val_labels.npy")
    assert y.shape[1] == 14
    if dataset == "chexpert":  # U-Ignore: the uncertain Edema labels stay masked (-1), counted per finding
        edema = names.index("Edema")
        assert (y[:, edema] == -1).any()
        assert m["val"]["outputs"]["Edema"]["n_masked"] == int((y[:, edema] == -1).sum())
    else:  # rare findings in a tiny split: undefined AUCs are named, not dropped silently
        assert m["test"]["auc_undefined"] and "CheXNet" in (d / "REPORT.md").read_text()
    out = capsys.readouterr().out
    assert "macro mean" in out


def test_report_lists_prevalence_of_every_split(runs, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(runs["numpy"]), "--n-boot", "20", "--no-progress", "--out",
                 str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["prevalence"]) == {"train", "val", "test"}
    for sp in ("val", "test"):
        for n in FINDINGS:
            assert m["prevalence"][sp][n]["prevalence"] == m[sp]["outputs"][n]["prevalence"]
    assert "Prevalence per split" in (out / "REPORT.md").read_text()


def test_predict_explains_a_findings_run(runs, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(make_synthetic(1, 16, seed=4)[0][0]).save(tmp_path / "x.png")
    ex = tmp_path / "maps"
    assert main(["predict", "--checkpoint", str(runs["numpy"]), "--image", str(tmp_path / "x.png"), "--explain",
                 str(ex), "--target", "effusion"]) == 0
    assert "explanation" in capsys.readouterr().err
    assert any(p.suffix == ".png" for p in ex.iterdir())
    record = json.loads(next(p for p in ex.iterdir() if p.suffix == ".json").read_text())
    assert record["output"]["name"] == "effusion"
