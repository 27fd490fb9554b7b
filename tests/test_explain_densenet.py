"""Explanations of ``--model densenet121``: the application's maps (``chexvision.explain``, the
code ``predict --explain`` and the gallery run) are equal on both tracks in float64, for every
method, Grad-CAM defaulting to the last dense block; and (slow) end to end through ``predict
--explain`` on a trained checkpoint, on both tracks and with torch blocked for the NumPy track.

64×64 is the smallest size at which densenet121's last dense block is wider than one pixel (2×2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexvision.cli import main
from tests.test_no_torch import assert_ok, run_without_torch

TINY = ["--dataset", "synthetic", "--synthetic-size", "64", "--image-size", "64", "--model", "densenet121",
        "--batch-size", "16", "--epochs", "1", "--no-progress", "--dtype", "float64", "--track", "torch"]
F64 = {"rtol": 1e-7, "atol": 1e-10}  # relative to each map's largest magnitude, as parity/helpers' float64 bounds


# -- the app's explanation path on both tracks, no training (fast) -------------------------------------
@pytest.fixture(scope="module")
def twin_engines():
    """densenet121 engines of both tracks at 64×64, float64, with the same weights (BatchNorm running
    statistics moved away from (0, 1), so that eval mode matters), and a gray image."""
    from chexvision.tracks import make_engine, model_spec

    spec = model_spec("densenet121", 64)
    torch_engine = make_engine("torch", spec, dtype="float64")
    torch_engine.build_model(seed=5)
    state = torch_engine.model_state()
    rng = np.random.default_rng(6)
    for key in state:
        if key.endswith("running_mean"):
            state[key] = rng.uniform(-0.2, 0.2, state[key].shape)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, state[key].shape)
    # this seed's fresh classifier argues against "abnormal" everywhere (Grad-CAM all zero after its
    # ReLU); flipped, the maps have something to show
    state["classifier.weight"] = -state["classifier.weight"]
    torch_engine.load_model_state(state)
    numpy_engine = make_engine("numpy", spec, dtype="float64")
    numpy_engine.load_model_state(state)
    images = rng.integers(0, 256, (1, 64, 64), dtype=np.uint8)
    return spec, {"numpy": numpy_engine, "torch": torch_engine}, images


@pytest.mark.parametrize("method,layer", [("gradcam", None), ("gradcam", "features.norm5"),
                                          ("gradcam", "features.denseblock2"), ("saliency", None),
                                          ("gradxinput", None),
                                          # 25 noisy copies through densenet121: slow under load
                                          pytest.param("smoothgrad", None, marks=pytest.mark.slow)])
def test_the_apps_densenet_maps_are_equal_on_both_tracks(twin_engines, method, layer):
    from chexvision.densenet import pixel_standardizer
    from chexvision.explain import compute_maps, grad_cam_layer
    from chexvision.predict import model_inputs

    spec, engines, images = twin_engines
    maps = {}
    for track, engine in engines.items():
        chosen = grad_cam_layer(engine, layer) if method == "gradcam" else None
        if method == "gradcam" and layer is None:
            assert chosen == "features.denseblock4"  # the default: the last dense block (2×2 at 64×64)
        x = model_inputs(engine, pixel_standardizer(64), images, spec)
        maps[track] = compute_maps(engine, x, method, chosen)
    assert maps["numpy"].shape == (1, 64, 64) and np.any(maps["numpy"] != 0)
    scale = max(np.abs(maps["torch"]).max(), 1e-30)
    np.testing.assert_allclose(maps["numpy"], maps["torch"], rtol=F64["rtol"], atol=F64["atol"] * scale)


# -- end to end through predict (a trained checkpoint: slow under load) ---------------------------------
@pytest.fixture(scope="module")
def densenet_run(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("densenet_explain")
    run = root / "run"
    extra = ["--no-evaluate"] if "--no-evaluate" in _train_help() else []
    assert main(["train", *TINY, *extra, "--cache", str(root / "cache"), "--out", str(run)]) == 0
    pngs = root / "pngs"
    pngs.mkdir()
    rng = np.random.default_rng(4)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (70, 66), dtype=np.uint8)).save(pngs / f"img{i}.png")
    return run, pngs


def _train_help() -> str:
    import argparse

    from chexvision import train

    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return p.format_help()


def explain(run, pngs, out, *extra):
    return main(["predict", "--checkpoint", str(run), "--dir", str(pngs), "--explain", str(out), *extra])


@pytest.mark.slow  # trains densenet121 one epoch at 64×64 in float64 (~20 s idle, minutes under load)
@pytest.mark.parametrize("method", ["gradcam", "saliency", "gradxinput", "smoothgrad"])
def test_both_tracks_give_the_same_densenet_maps(densenet_run, tmp_path, method):
    run, pngs = densenet_run
    maps = {}
    for track in ("numpy", "torch"):
        out = tmp_path / track
        assert explain(run, pngs, out, "--method", method, "--track", track) == 0
        maps[track] = np.stack([np.load(out / f"img{i}.npy", allow_pickle=False) for i in range(2)])
        rec = json.loads((out / "img0.json").read_text())
        assert rec["track"] == track and rec["method"] == method and rec["output"]["name"] == "abnormal"
        if method == "gradcam":
            assert rec["layer"] == "features.denseblock4"  # the default: the last dense block
    assert maps["numpy"].shape == (2, 64, 64) and np.all(np.isfinite(maps["numpy"]))
    if method != "gradcam":  # (a Grad-CAM map may be all zero after its ReLU: nothing argued for the output)
        assert np.any(maps["numpy"] != 0)
    scale = max(np.abs(maps["torch"]).max(), 1e-30)
    np.testing.assert_allclose(maps["numpy"], maps["torch"], rtol=F64["rtol"], atol=F64["atol"] * scale)


@pytest.mark.slow  # the trained checkpoint above
def test_densenet_gradcam_at_another_block_and_norm5(densenet_run, tmp_path):
    run, pngs = densenet_run
    for layer in ("features.denseblock2", "features.norm5"):
        maps = {}
        for track in ("numpy", "torch"):
            out = tmp_path / f"{track}-{layer}"
            assert explain(run, pngs, out, "--layer", layer, "--track", track) == 0
            assert json.loads((out / "img1.json").read_text())["layer"] == layer
            maps[track] = np.load(out / "img1.npy", allow_pickle=False)
        scale = max(np.abs(maps["torch"]).max(), 1e-30)
        np.testing.assert_allclose(maps["numpy"], maps["torch"], rtol=F64["rtol"], atol=F64["atol"] * scale)
        assert maps["numpy"].shape == (64, 64)


@pytest.mark.slow  # the trained checkpoint above
def test_densenet_explain_with_the_numpy_track_and_torch_blocked(densenet_run, tmp_path):
    run, pngs = densenet_run
    out = tmp_path / "maps"
    proc = run_without_torch(
        f"""
        from chexvision.cli import main
        rc = main(["predict", "--checkpoint", {str(run)!r}, "--dir", {str(pngs)!r}, "--explain", {str(out)!r}])
        assert rc == 0, rc
        assert not torch_loaded(), torch_loaded()
        """
    )
    assert_ok(proc)
    rec = json.loads((out / "img0.json").read_text())
    assert rec["method"] == "gradcam" and rec["layer"] == "features.denseblock4" and rec["track"] == "numpy"
    assert (out / "img1.png").read_bytes()[:4] == b"\x89PNG"
