"""``python -m chexvision compare``: both tracks in lockstep, through ``chexvision.cli.main``.

Small runs (16×16 synthetic images, one hidden layer of 32) keep the file to a few seconds; the
float64 run still takes enough Adam steps for rounding differences to have had the chance to grow.
"""

from __future__ import annotations

import json
import math

import pytest

from chexvision.cli import main

pytest.importorskip("torch", reason="compare runs the torch track")

SMALL = ["--dataset", "synthetic", "--synthetic-size", "240", "--image-size", "16", "--hidden", "32",
         "--batch-size", "16"]
PNG = b"\x89PNG\r\n\x1a\n"


def run_compare(tmp_path, *extra: str) -> dict:
    out = tmp_path / "cmp"
    assert main(["compare", *SMALL, "--out", str(out), *extra]) == 0
    return json.loads((out / "compare.json").read_text())


def largest(result: dict, key: str = "max_abs") -> float:
    return max(v for series in result[key].values() for v in series)


def test_float64_lockstep_stays_at_rounding_level(tmp_path, capsys):
    result = run_compare(tmp_path, "--steps", "30", "--dtype", "float64")
    out = tmp_path / "cmp"
    for name in ("divergence.png", "losses.png", "timing.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    names = result["tensors"]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"]
    assert all(len(result["max_abs"][k]) == 31 for k in names)  # step 0 and 30 steps
    assert all(v == 0.0 for k in names for v in (result["max_abs"][k][0],))  # same initial weights
    assert largest(result) < 1e-9 and largest(result, "max_rel") < 1e-9
    ln, lt = result["loss"]["numpy"], result["loss"]["torch"]
    assert len(ln) == len(lt) == 30 and max(abs(a - b) for a, b in zip(ln, lt)) < 1e-9
    assert abs(ln[-1] - ln[0]) > 1e-3, "the tracks must actually train for the agreement to mean anything"
    assert result["verdict"]["first_over_tolerance"] is None
    assert len(result["seconds"]["numpy"]) == len(result["seconds"]["torch"]) == 30
    assert result["verdict"]["time_ratio_numpy_over_torch"] > 0
    printed = capsys.readouterr().out
    assert "first over tolerance" in printed and "none" in printed and "numpy/torch" in printed


@pytest.mark.parametrize("target", ["layers.3.weight", "layers.3"], ids=["tensor", "layer"])
def test_perturbation_is_detected_at_its_tensor_and_step_0(tmp_path, capsys, target):
    result = run_compare(tmp_path, "--steps", "3", "--perturb", f"{target}:1e-6")
    first = result["verdict"]["first_over_tolerance"]
    assert first["tensor"] == "layers.3.weight" and first["step"] == 0
    assert math.isclose(first["value"], 1e-6, rel_tol=1e-6)
    assert result["max_abs"]["layers.0.weight"][0] == 0.0  # only the nudged tensor differs at step 0
    assert result["max_abs"]["layers.0.weight"][1] > 1e-12  # ... and the nudge spreads backwards at step 1
    assert "layers.3.weight at step 0" in capsys.readouterr().out


def test_float32_divergence_is_finite_nonzero_and_small(tmp_path):
    result = run_compare(tmp_path, "--steps", "20", "--dtype", "float32")
    values = [v for series in result["max_abs"].values() for v in series]
    assert all(v is not None and math.isfinite(v) for v in values)
    assert 0.0 < largest(result) < 1e-2
    ln, lt = result["loss"]["numpy"], result["loss"]["torch"]
    assert max(abs(a - b) for a, b in zip(ln, lt)) < 1e-4


@pytest.mark.parametrize("bad, message", [
    (["--perturb", "layers.9.weight:1e-3"], "no tensor or layer"),
    (["--perturb", "layers.0.weight"], "LAYER:EPS"),
    (["--steps", "0"], "--steps"),
    (["--steps", "1000000000000"], "--steps"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, bad, message):
    assert main(["compare", *SMALL, "--out", str(tmp_path / "x"), *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cnn_lockstep_compares_parameters_and_batchnorm_buffers(tmp_path):
    result = run_compare(tmp_path, "--model", "cnn", "--steps", "2", "--threads", "1")
    names = result["tensors"]
    assert any(n.endswith(".running_mean") for n in names) and any(n.endswith(".running_var") for n in names)
    assert "head.weight" in names
    assert all(result["max_abs"][n][0] == 0.0 for n in names)
    assert largest(result) < 1e-9


def test_out_never_replaces_files_that_an_earlier_compare_did_not_write(tmp_path, capsys):
    """Issue 10 §1: a user's same-named files in --out are refused before the run, byte for byte kept."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "compare.json").write_text("{}")
    (out / "losses.png").write_bytes(b"my picture")
    assert main(["compare", *SMALL, "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (out / "compare.json").read_text() == "{}" and (out / "losses.png").read_bytes() == b"my picture"
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "losses.png"]
    # --force replaces them; then a second compare into its own folder needs no --force
    assert main(["compare", *SMALL, "--steps", "2", "--out", str(out), "--force"]) == 0
    assert (out / "losses.png").read_bytes().startswith(PNG)
    assert main(["compare", *SMALL, "--steps", "2", "--out", str(out)]) == 0
    assert json.loads((out / "compare.json").read_text())["config"]["steps"] == 2
