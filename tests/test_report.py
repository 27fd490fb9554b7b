"""chexvision.report.write_evaluation and chexvision.plots on synthetic scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from chexvision import bootstrap as B
from chexvision import metrics as M
from chexvision import plots
from chexvision import thresholds as T
from chexvision.errors import UserError
from chexvision.report import write_evaluation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_BOOT = 100  # enough to exercise the bootstrap, cheap enough for a unit test


def _split(n, prevalence, seed, shift=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int64)
    s = (1 / (1 + np.exp(-(rng.normal(size=n) + shift * y - 0.5)))).astype(np.float32)  # probabilities
    return s, y


HISTORY = [
    {"epoch": 1, "train_loss": 0.70, "train_data_loss": 0.69, "train_reg_loss": 0.01, "val_loss": 0.68,
     "val_auc": 0.61, "val_accuracy": 0.58, "lr": 1e-3},
    {"epoch": 2, "train_loss": 0.64, "train_data_loss": 0.63, "val_loss": 0.66, "val_auc": 0.66, "lr": 5e-4},
    {"epoch": 3, "train_loss": 0.61, "val_loss": None, "val_auc": 0.65},  # missing / None entries tolerated
]  # fmt: skip
CONFIG = {"track": "numpy", "model": {"name": "mlp", "hidden": (64, 32)}, "data_dir": Path("/data/nih"), "seed": 0}
EXPECTED_FILES = {
    "metrics.json", "REPORT.md", "val_scores.npy", "val_labels.npy", "test_scores.npy", "test_labels.npy",
    "loss_curve.png", "roc.png", "pr.png", "confusion.png", "confusion_val.png",
}  # fmt: skip


@pytest.fixture(scope="module")
def data():
    vs, vy = _split(400, 0.45, seed=1)
    ts, ty = _split(600, 0.6, seed=2, shift=0.8)
    return vs, vy, ts, ty


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    vs, vy, ts, ty = data
    out = tmp_path_factory.mktemp("run")
    result = write_evaluation(
        out, val_scores=vs, val_labels=vy, test_scores=ts, test_labels=ty, history=HISTORY, config=CONFIG,
        n_boot=N_BOOT, seed=0,
    )  # fmt: skip
    return out, result


def _reject_constant(name):
    raise AssertionError(f"metrics.json holds {name}, which is not JSON")


def _numbers(obj, path=""):
    """Yield (path, value) for every number and null in a parsed JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif obj is None or (isinstance(obj, (int, float)) and not isinstance(obj, bool)):
        yield path, obj


def test_every_artifact_is_written(run):
    out, result = run
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert set(result["files"]) == EXPECTED_FILES


def test_metrics_json_is_strict_json_with_expected_keys_and_finite_values(run):
    out, _ = run
    d = json.loads((out / "metrics.json").read_text(), parse_constant=_reject_constant)
    assert {"schema", "threshold", "val", "test", "bootstrap", "training", "config", "files"} <= set(d)
    assert d["threshold"]["chosen_on"] == "val" and d["threshold"]["method"] == "youden"
    split_keys = {
        "n", "n_positive", "n_negative", "positive_rate", "predicted_positive_rate", "roc_auc", "roc_auc_ci95",
        "bootstrap_skipped", "average_precision", "accuracy", "balanced_accuracy", "precision", "recall",
        "specificity", "f1", "tn", "fp", "fn", "tp", "confusion_matrix", "roc_curve", "pr_curve", "threshold",
    }  # fmt: skip
    for name in ("val", "test"):
        assert split_keys <= set(d[name]), split_keys - set(d[name])
        lo, hi = d[name]["roc_auc_ci95"]
        assert lo < d[name]["roc_auc"] < hi
        assert d[name]["roc_curve"]["thresholds"][0] is None  # inf, written as null
    for path, value in _numbers(d):
        if path.endswith("roc_curve.thresholds[0]") or path == ".threshold.method_value":
            continue
        assert value is not None and math.isfinite(value), path
    assert d["config"] == {"track": "numpy", "model": {"name": "mlp", "hidden": [64, 32]}, "data_dir": "/data/nih",
                           "seed": 0}  # fmt: skip
    assert d["val"]["n"] == 400 and d["test"]["n"] == 600
    assert d["training"]["epochs"] == 3 and d["training"]["best_val_auc_epoch"] == 2


def test_numbers_match_the_metrics_module(run, data):
    _, result = run
    vs, vy, ts, ty = data
    thr = result["threshold"]["value"]
    assert thr == T.youden_threshold(vy, vs)  # chosen on validation alone
    for name, s, y in (("val", vs, vy), ("test", ts, ty)):
        m = result[name]
        ref = M.binary_metrics(y, s, thr)
        for key, value in ref.items():
            assert m[key] == value, f"{name} {key}"
        assert m["roc_auc"] == M.roc_auc_score(y, s)
        assert m["average_precision"] == M.average_precision_score(y, s)
        assert m["confusion_matrix"] == M.confusion_matrix(y, (s >= thr).astype(int)).tolist()
    seeded = B.bootstrap_auc_ci(vy, vs, n_boot=N_BOOT, seed=0)
    assert tuple(result["val"]["roc_auc_ci95"]) == seeded


def test_raw_scores_round_trip(run, data):
    out, _ = run
    for arr, name in zip(data, ("val_scores", "val_labels", "test_scores", "test_labels")):
        np.testing.assert_array_equal(np.load(out / f"{name}.npy", allow_pickle=False), arr)


def test_pngs_are_real_pngs(run):
    out, _ = run
    for name in ("loss_curve.png", "roc.png", "pr.png", "confusion.png", "confusion_val.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


def test_report_md_has_the_sections(run):
    out, result = run
    text = (out / "REPORT.md").read_text()
    for heading in ("## Data", "## Results", "## Decision threshold", "## Training", "## Caveats", "## Intended use"):
        assert heading in text, heading
    assert "balanced accuracy" in text and "not for diagnosis" in text
    assert f"{result['threshold']['value']:.6g}" in text
    assert f"{result['test']['roc_auc']:.3f}" in text


def test_threshold_does_not_depend_on_test_scores(tmp_path, data):
    vs, vy, ts, ty = data
    a = write_evaluation(tmp_path / "a", val_scores=vs, val_labels=vy, test_scores=ts, test_labels=ty, n_boot=10)
    b = write_evaluation(tmp_path / "b", val_scores=vs, val_labels=vy, test_scores=1 - ts, test_labels=1 - ty,
                         n_boot=10)  # fmt: skip
    assert a["threshold"]["value"] == b["threshold"]["value"]
    assert a["val"]["accuracy"] == b["val"]["accuracy"]
    assert a["test"]["accuracy"] != b["test"]["accuracy"]  # the test split did change


def test_sensitivity_threshold_reaches_target_on_val(tmp_path, data):
    vs, vy, _, _ = data
    r = write_evaluation(tmp_path, val_scores=vs, val_labels=vy, threshold_method="sensitivity",
                         threshold_value=0.9, n_boot=10)  # fmt: skip
    assert r["val"]["recall"] >= 0.9 and r["threshold"]["method_value"] == 0.9


def test_without_test_split_or_history(tmp_path, data):
    vs, vy, ts, ty = data
    write_evaluation(tmp_path, val_scores=vs, val_labels=vy, test_scores=ts, test_labels=ty, history=HISTORY,
                     n_boot=10)  # fmt: skip
    r = write_evaluation(tmp_path, val_scores=vs, val_labels=vy, n_boot=10)
    assert r["test"] is None and r["training"] is None
    names = {p.name for p in tmp_path.iterdir()}
    assert names == EXPECTED_FILES - {"test_scores.npy", "test_labels.npy", "loss_curve.png", "confusion_val.png"}
    assert "## Training" not in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("label", [0, 1], ids=["all-normal", "all-abnormal"])
def test_single_class_validation_raises_user_error_and_writes_nothing(tmp_path, data, label):
    vs, _, ts, ty = data
    with pytest.raises(UserError, match="only one class.*threshold"):
        write_evaluation(tmp_path / "out", val_scores=vs, val_labels=np.full(vs.size, label), test_scores=ts,
                         test_labels=ty)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_bad_inputs_raise_user_error(tmp_path, data):
    vs, vy, ts, ty = data
    with pytest.raises(UserError, match="validation split.*differ in length"):
        write_evaluation(tmp_path, val_scores=vs[:-1], val_labels=vy)
    with pytest.raises(UserError, match="test split.*finite"):
        write_evaluation(tmp_path, val_scores=vs, val_labels=vy, test_scores=np.full(ty.size, np.nan), test_labels=ty)
    with pytest.raises(UserError, match="together"):
        write_evaluation(tmp_path, val_scores=vs, val_labels=vy, test_scores=ts)
    with pytest.raises(UserError, match="threshold"):
        write_evaluation(tmp_path, val_scores=vs, val_labels=vy, threshold_method="otsu")
    assert list(tmp_path.iterdir()) == []


def test_single_class_test_split_is_reported_not_fatal(tmp_path, data):
    vs, vy, ts, _ = data
    with pytest.warns(M.UndefinedMetricWarning):
        r = write_evaluation(tmp_path, val_scores=vs, val_labels=vy, test_scores=ts, test_labels=np.ones(ts.size),
                             n_boot=10)  # fmt: skip
    assert math.isnan(r["test"]["roc_auc"])
    d = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=_reject_constant)
    assert d["test"]["roc_auc"] is None and d["test"]["recall"] is not None
    assert "n/a" in (tmp_path / "REPORT.md").read_text()


# ----------------------------------------------------------------------------- plots


def test_plot_functions_write_pngs(tmp_path):
    fpr, tpr, _ = M.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    prec, rec, _ = M.precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    calls = {
        "history.png": lambda p: plots.plot_history(HISTORY, p),
        "history_no_lr.png": lambda p: plots.plot_history([{"train_loss": 1.0}, {"train_loss": 0.5}], p),
        "roc.png": lambda p: plots.plot_roc({"toy": (fpr, tpr, 0.75)}, p),
        "pr.png": lambda p: plots.plot_pr({"toy": (rec, prec, 0.83)}, p),
        "cm.png": lambda p: plots.plot_confusion(np.array([[5, 1], [2, 7]]), p, "toy"),
    }
    for name, call in calls.items():
        returned = call(tmp_path / name)
        assert returned[:8] == PNG_MAGIC
        assert (tmp_path / name).read_bytes() == returned, name
    assert plots.plot_history([], None)[:8] == PNG_MAGIC  # an empty history still draws (empty axes)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        plots.plot_confusion(np.zeros(3), None)
