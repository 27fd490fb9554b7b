"""Issue 10 §2: no silent wrong answer.

Corrupt weights or statistics (NaN, int, complex, float16), thresholds outside [0, 1] from any
source, non-finite probabilities in any output, and a loss that runs away by orders of magnitude.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from tests.cli_checks import one_line_error

SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "64",
         "--hidden", "8", "--no-progress", "--no-augment", "--no-evaluate"]  # training only (as before train evaluated)


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (which Python's json accepts by default)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust_answers") / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
    return path


def edited(run: Path, dest: Path, file: str, edit) -> Path:
    """A copy of the run whose best/ and last/ ``file`` (.npz arrays or .json) went through ``edit``."""
    shutil.copytree(run, dest)
    for name in (ckpt.BEST, ckpt.LAST):
        path = dest / name / file
        if file.endswith(".npz"):
            arrays = ckpt.read_npz(path)
            edit(arrays)
            np.savez(path, **arrays)
        else:
            path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return dest


def first_float_key(arrays: dict) -> str:
    return next(k for k, v in arrays.items() if v.dtype.kind == "f")


CORRUPTIONS = {
    "nan": lambda a: a.__setitem__(first_float_key(a), np.full_like(a[first_float_key(a)], np.nan)),
    "inf": lambda a: a.__setitem__(first_float_key(a), np.full_like(a[first_float_key(a)], -np.inf)),
    "int64": lambda a: a.__setitem__(first_float_key(a), a[first_float_key(a)].astype(np.int64)),
    "complex": lambda a: a.__setitem__(first_float_key(a), a[first_float_key(a)].astype(np.complex128)),
    "float16": lambda a: a.__setitem__(first_float_key(a), a[first_float_key(a)].astype(np.float16)),
}


@pytest.mark.parametrize("file", [ckpt.MODEL_FILE, ckpt.STANDARDIZER_FILE])
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_weights_or_statistics_are_refused_by_predict_evaluate_and_resume(run, image, tmp_path, capsys,
                                                                                   file, kind):
    bad = edited(run, tmp_path / "bad", file, CORRUPTIONS[kind])
    # resume needs an unfinished run: its saved epochs raised from 2 to 3
    cfg_path = bad / ckpt.LAST / ckpt.CONFIG_FILE
    cfg = json.loads(cfg_path.read_text())
    cfg["train"]["epochs"] = 3
    cfg_path.write_text(json.dumps(cfg))
    for args in (["predict", "--checkpoint", str(bad), "--image", str(image), "--json"],
                 ["evaluate", "--checkpoint", str(bad), "--n-boot", "10", "--no-progress"],
                 ["train", "--resume", str(bad), "--no-progress"]):
        assert main(args) == 2, args[0]
        captured = capsys.readouterr()
        assert "nan" not in captured.out.lower(), args[0]
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert file in err and ("NaN or infinite" in err if kind in ("nan", "inf") else "float32 or float64" in err)
    assert not (bad / "metrics.json").exists()


@pytest.mark.parametrize("kind", ["nan", "complex"])
def test_corrupt_weights_are_refused_by_the_torch_track_too(run, image, tmp_path, capsys, kind):
    pytest.importorskip("torch")
    bad = edited(run, tmp_path / "bad", ckpt.MODEL_FILE, CORRUPTIONS[kind])
    for args in (["predict", "--checkpoint", str(bad), "--image", str(image), "--track", "torch"],
                 ["evaluate", "--checkpoint", str(bad), "--n-boot", "10", "--no-progress", "--track", "torch"]):
        assert main(args) == 2
        one_line_error(capsys, ckpt.MODEL_FILE)


THRESHOLDS = {"nan": float("nan"), "five": 5, "inf": float("inf"), "minus-one": -1, "string": "0.5", "null-obj": []}


@pytest.mark.parametrize("value", list(THRESHOLDS), ids=list(THRESHOLDS))
def test_a_bad_threshold_in_meta_json_is_refused(run, image, tmp_path, capsys, value):
    def edit(meta):
        if value == "null-obj":
            meta["threshold"] = []
        else:
            meta["threshold"]["value"] = THRESHOLDS[value]
        return meta

    bad = edited(run, tmp_path / "bad", ckpt.META_FILE, edit)
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    one_line_error(capsys, "meta.json", "threshold")


def test_meta_json_threshold_nan_never_labels_images(run, image, tmp_path, capsys):
    """The issue's case: scores 0.86 .. 0.9995 all labelled normal under a NaN threshold."""
    bad = edited(run, tmp_path / "bad", ckpt.META_FILE, lambda m: {**m, "threshold": {**m["threshold"], "value": float("nan")}})
    assert "NaN" in (bad / "best" / ckpt.META_FILE).read_text()
    assert main(["predict", "--checkpoint", str(bad), "--image", str(image)]) == 2
    assert "normal" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["nan", "inf", "5", "-1", "-inf"])
def test_predict_threshold_option_must_be_in_0_1(run, image, capsys, value):
    assert main(["predict", "--checkpoint", str(run), "--image", str(image), f"--threshold={value}"]) == 2
    one_line_error(capsys, "--threshold")


@pytest.mark.parametrize("spec", ["fixed:1e308", "fixed:nan", "fixed:-0.1", "fixed:1.5", "fixed:inf"])
def test_evaluate_fixed_threshold_must_be_in_0_1(run, tmp_path, capsys, spec):
    assert main(["evaluate", "--checkpoint", str(run), "--threshold", spec, "--n-boot", "10"]) == 2
    one_line_error(capsys, "--threshold")
    assert main(["train", *SMALL, "--epochs", "1", "--threshold", spec, "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "--threshold")
    assert not (tmp_path / "o").exists()


def test_an_edited_metrics_json_threshold_is_refused(run, image, tmp_path, capsys):
    r = tmp_path / "r"
    shutil.copytree(run, r)
    assert main(["evaluate", "--checkpoint", str(r), "--n-boot", "10", "--no-progress"]) == 0
    metrics = json.loads((r / "metrics.json").read_text())
    metrics["threshold"]["value"] = 7.5
    (r / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(r), "--image", str(image)]) == 2
    one_line_error(capsys, "metrics.json", "threshold")


def test_a_non_finite_score_is_never_an_answer(run, image, tmp_path, capsys, monkeypatch):
    """Even if a model produced NaN from finite weights, no output holds it; JSON stays strict."""
    from chexvision import predict

    monkeypatch.setattr(predict, "predict_images", lambda *a, **k: np.array([0.25, np.nan]))
    out = tmp_path / "p.json"
    code = main(["predict", "--checkpoint", str(run), "--image", str(image), str(image), "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 3  # predict's documented "some images not scored" (issue 11)
    rows = strict_json(captured.out)
    assert [r["p_abnormal"] for r in rows] == [0.25, None] and rows[1]["prediction"] == "no score"
    assert strict_json(out.read_text()) == rows
    assert "not a finite number" in captured.err


def test_checkpoint_json_is_strict(tmp_path):
    with pytest.raises(ValueError):
        ckpt.write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_runaway_loss_is_warned_about(tmp_path, capsys):
    """Adam at --lr 1e6 'trained' to losses of 1e15 and exited 0 without a word."""
    code = main(["train", *SMALL, "--epochs", "2", "--lr", "1e6", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    if code == 2:  # it went non-finite: that already stops with one line
        assert "diverged" in err
        return
    assert code == 0
    assert "warning" in err and "diverging" in err and "--lr" in err


def test_a_healthy_run_is_not_warned_about(run, tmp_path, capsys):
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(tmp_path / "r")]) == 0
    assert "warning" not in capsys.readouterr().err
