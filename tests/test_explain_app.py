"""``predict --explain DIR`` and the REPORT.md gallery, end to end through ``chexvision.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from tests.cli_checks import one_line_error
from tests.test_no_torch import assert_ok, run_without_torch

SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "32",
         "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    out = {"cnn": root / "cnn", "mlp": root / "mlp"}
    assert main(["train", *SMALL, "--model", "cnn", "--channels", "4,8", "--cache", str(root / "cache"),
                 "--out", str(out["cnn"])]) == 0
    assert main(["train", *SMALL, "--hidden", "16,8", "--cache", str(root / "cache"), "--out", str(out["mlp"])]) == 0
    return out


@pytest.fixture(scope="module")
def pngs(runs, tmp_path_factory):
    """Three test-split images of the run's own data as PNG files."""
    from PIL import Image

    from chexvision.data import open_dataset

    config = json.loads((runs["cnn"] / "best" / ckpt.CONFIG_FILE).read_text())
    ds = open_dataset(config["data"], progress=False)
    folder = tmp_path_factory.mktemp("pngs")
    for i, k in enumerate(ds.indices("test")[:3]):
        Image.fromarray(ds.images[k]).save(folder / f"img{i}.png")
    return folder


def explain(run, pngs, out, *extra):
    return main(["predict", "--checkpoint", str(run), "--dir", str(pngs), "--explain", str(out), *extra])


def test_cnn_default_is_gradcam_at_the_last_block_with_png_npy_json_per_image(runs, pngs, tmp_path):
    out = tmp_path / "maps"
    assert explain(runs["cnn"], pngs, out) == 0
    for i in range(3):
        rec = json.loads((out / f"img{i}.json").read_text())
        assert rec["method"] == "gradcam" and rec["layer"] == "features.3"  # 2 widths: stem(0-2), residual block 3
        assert rec["output"]["index"] == 0 and rec["image"].endswith(f"img{i}.png")
        assert rec["overlay"] == f"img{i}.png" and rec["map_file"] == f"img{i}.npy"
        m = np.load(out / f"img{i}.npy", allow_pickle=False)
        assert m.shape == (16, 16) and m.dtype == np.float64 and np.all(np.isfinite(m)) and (m >= 0).all()
        assert (out / f"img{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"img{i}{s}" for i in range(3) for s in (".png", ".npy", ".json"))


@pytest.mark.parametrize("method", ["saliency", "gradxinput", "smoothgrad", "gradcam"])
def test_both_tracks_write_the_same_maps(runs, pngs, tmp_path, method):
    maps = {}
    for track in ("numpy", "torch"):
        out = tmp_path / track
        assert explain(runs["cnn"], pngs, out, "--method", method, "--track", track) == 0
        maps[track] = np.stack([np.load(out / f"img{i}.npy") for i in range(3)])
        assert json.loads((out / "img0.json").read_text())["track"] == track
    assert np.any(maps["numpy"] != 0)
    # float32 models: the two engines' BLAS kernels sum in different orders
    np.testing.assert_allclose(maps["numpy"], maps["torch"], rtol=1e-4, atol=1e-5 * np.abs(maps["torch"]).max())


def test_the_npy_is_the_raw_map_of_the_model_input(runs, pngs, tmp_path):
    """Not clipped, not smoothed, not rescaled: the library's saliency of the standardised image."""
    from chexvision.data import load_image
    from chexvision.evaluate import load_engine, load_standardizer
    from chexvision.predict import model_inputs
    from numpy_nn.explain import Saliency

    out = tmp_path / "maps"
    assert explain(runs["mlp"], pngs, out, "--method", "saliency") == 0
    checkpoint = ckpt.load_checkpoint(runs["mlp"])
    engine = load_engine(checkpoint, "numpy")
    x = model_inputs(engine, load_standardizer(checkpoint), load_image(pngs / "img1.png", 16)[None], checkpoint.model_spec)
    expected = Saliency(engine.model).attribute(x).reshape(16, 16)
    np.testing.assert_array_equal(np.load(out / "img1.npy"), expected.astype(np.float64))


def test_mlp_default_is_saliency_and_gradcam_is_refused_in_one_line(runs, pngs, tmp_path, capsys):
    assert explain(runs["mlp"], pngs, tmp_path / "a") == 0
    assert json.loads((tmp_path / "a" / "img0.json").read_text())["method"] == "saliency"
    capsys.readouterr()
    assert explain(runs["mlp"], pngs, tmp_path / "b", "--method", "gradcam") == 2
    one_line_error(capsys, "--method gradcam needs a convolutional model")
    assert not (tmp_path / "b").exists()


def test_existing_files_are_never_overwritten(runs, pngs, tmp_path, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "img2.npy").write_bytes(b"mine")
    assert explain(runs["cnn"], pngs, out) == 2
    one_line_error(capsys, "img2.npy exists")
    assert (out / "img2.npy").read_bytes() == b"mine" and sorted(p.name for p in out.iterdir()) == ["img2.npy"]
    assert explain(runs["cnn"], pngs, out, "--force") == 0  # asked for: replaced
    assert np.load(out / "img2.npy", allow_pickle=False).shape == (16, 16)


def test_bad_explain_options_are_one_line_each(runs, pngs, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.png").write_bytes((pngs / "img0.png").read_bytes())
    (b / "x.png").write_bytes((pngs / "img1.png").read_bytes())
    assert main(["predict", "--checkpoint", str(runs["cnn"]), "--image", str(a / "x.png"), str(b / "x.png"),
                 "--explain", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "would both write x.png")
    assert explain(runs["cnn"], pngs, tmp_path / "o", "--layer", "features.9") == 2
    one_line_error(capsys, "--layer features.9: no such layer", "features.3")
    assert main(["predict", "--checkpoint", str(runs["cnn"]), "--dir", str(pngs), "--method", "saliency"]) == 2
    one_line_error(capsys, "add --explain DIR")
    assert explain(runs["cnn"], pngs, tmp_path / "o", "--method", "saliency", "--layer", "features.3") == 2
    one_line_error(capsys, "--layer applies to --method gradcam")
    (tmp_path / "file").write_text("")
    assert explain(runs["cnn"], pngs, tmp_path / "file") == 2
    one_line_error(capsys, "is not a folder")


def test_explain_with_the_numpy_track_runs_with_torch_blocked(runs, pngs, tmp_path):
    out = tmp_path / "maps"
    proc = run_without_torch(
        f"""
        from chexvision.cli import main
        for method in ("gradcam", "smoothgrad"):
            rc = main(["predict", "--checkpoint", {str(runs["cnn"])!r}, "--dir", {str(pngs)!r},
                       "--explain", {str(out)!r} + "/" + method, "--method", method])
            assert rc == 0, rc
        assert not torch_loaded(), torch_loaded()
        """
    )
    assert_ok(proc)
    assert (out / "gradcam" / "img0.npy").is_file() and (out / "smoothgrad" / "img2.png").is_file()


def test_evaluate_writes_the_gallery_into_report(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["evaluate", "--checkpoint", str(runs["cnn"]), "--n-boot", "20", "--no-progress", "--gallery", "2",
                 "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "## Where the model looked" in report and "Grad-CAM at layer `features.3`" in report
    shown = [name for name in ("explain_tp.png", "explain_fp.png", "explain_fn.png") if (out / name).is_file()]
    assert shown, "no gallery image written"
    for name in shown:
        assert f"![{name}]({name})" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["file"] for p in metrics["gallery"]["panels"]] == shown
    # --gallery 0: no gallery, and the earlier gallery files are removed as stale
    assert main(["evaluate", "--checkpoint", str(runs["cnn"]), "--n-boot", "20", "--no-progress", "--gallery", "0",
                 "--out", str(out)]) == 0
    assert "Where the model looked" not in (out / "REPORT.md").read_text()
    assert not any((out / name).exists() for name in shown)


def test_gallery_count_is_checked(runs, capsys):
    assert main(["evaluate", "--checkpoint", str(runs["cnn"]), "--gallery", "-1", "--no-progress"]) == 2
    one_line_error(capsys, "--gallery must be from 0 to 50")


def test_lesion_measure_runs_on_a_synthetic_run(runs, capsys):
    from chexvision import explain_measure

    capsys.readouterr()
    assert explain_measure.main(["--checkpoint", str(runs["cnn"]), "--limit", "5"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["saliency", "gradxinput", "smoothgrad", "gradcam"]
    for r in rows[1:]:
        inside, area = float(r.split()[2]), float(r.split()[3])
        assert 0 <= inside <= 1 and 0 < area < 1


def test_compute_maps_sums_the_channels_of_a_multi_channel_input():
    from types import SimpleNamespace

    from chexvision.explain import compute_maps
    from numpy_nn.explain import GradCAM, Saliency
    from numpy_nn.models import CNN

    model = CNN(in_channels=3, channels=(4, 8), dtype=np.float64)
    engine = SimpleNamespace(model=model)  # a NumPy-track engine needs only .model here
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    np.testing.assert_allclose(compute_maps(engine, x, "saliency"), Saliency(model).attribute(x).sum(axis=1))
    np.testing.assert_allclose(compute_maps(engine, x, "gradcam", "features.3"),
                               GradCAM(model, "features.3").attribute(x)[:, 0])
