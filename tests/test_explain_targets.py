"""Which output a map explains: ``predict --target NAME|INDEX``, each image's most probable output
by default for a multi-output model, and the output's name in the JSON record and the overlay title."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from chexvision.cli import main
from chexvision.errors import UserError
from chexvision.explain import choose_targets, compute_maps, output_names, parse_target
from tests.cli_checks import one_line_error

FINDINGS = ("opacity", "effusion", "cardiomegaly")  # chexvision.tasks.SYNTHETIC_FINDINGS


def test_parse_target_by_name_or_index_and_the_default():
    assert parse_target(None, ("abnormal",)) == 0
    assert parse_target(None, FINDINGS) is None  # each image's most probable output
    assert parse_target("Effusion", FINDINGS) == parse_target("1", FINDINGS) == 1
    assert parse_target("abnormal", ("abnormal",)) == parse_target("0", ("abnormal",)) == 0
    with pytest.raises(UserError, match=r"--target 3: output index out of range; .* 0 opacity, 1 effusion"):
        parse_target("3", FINDINGS)
    with pytest.raises(UserError, match="--target -1: output index out of range"):
        parse_target("-1", FINDINGS)
    with pytest.raises(UserError, match="--target edema: no such output; the model's outputs are 0 opacity"):
        parse_target("edema", FINDINGS)


def test_output_names_come_from_the_checkpoint_task():
    assert output_names({}) == ("abnormal",)
    assert output_names({"task": {"name": "findings", "outputs": list(FINDINGS)}}) == FINDINGS


def test_choose_targets_is_the_argmax_per_image_or_the_chosen_output():
    probs = np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.3], [0.2, 0.3, 0.6]])
    np.testing.assert_array_equal(choose_targets(None, probs), [1, 0, 2])
    np.testing.assert_array_equal(choose_targets(2, probs), [2, 2, 2])
    np.testing.assert_array_equal(choose_targets(0, np.array([0.3, 0.8])), [0, 0])


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_per_image_targets_give_each_image_its_own_outputs_map(method):
    from numpy_nn.models import CNN

    model = CNN(channels=(4, 8), out_features=3, dtype=np.float64)
    engine = SimpleNamespace(model=model)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12))
    layer = "features.3" if method == "gradcam" else None
    per_image = compute_maps(engine, x, method, layer, np.array([2, 0, 2, 1]))
    for i, k in enumerate([2, 0, 2, 1]):
        np.testing.assert_allclose(per_image[i], compute_maps(engine, x[i:i + 1], method, layer, k)[0], atol=1e-12)
    assert not np.allclose(per_image[0], compute_maps(engine, x[:1], method, layer, 0)[0])


# -- end to end: a binary run and a findings run ------------------------------------------------------
SMALL = ["--dataset", "synthetic", "--synthetic-size", "300", "--image-size", "16", "--batch-size", "32",
         "--epochs", "1", "--no-progress", "--model", "cnn", "--channels", "4,8"]


def _pngs(run, folder, n=3):
    from PIL import Image

    from chexvision import checkpoint as ckpt
    from chexvision.data import open_dataset

    config = json.loads((run / "best" / ckpt.CONFIG_FILE).read_text())
    ds = open_dataset(config["data"], progress=False)
    folder.mkdir()
    for i, k in enumerate(ds.indices("test")[:n]):
        Image.fromarray(ds.images[k]).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    assert main(["train", *SMALL, "--cache", str(root / "cache"), "--out", str(root / "run")]) == 0
    return root / "run", _pngs(root / "run", root / "pngs")


def test_binary_target_is_abnormal_and_anything_else_is_refused(binary_run, tmp_path, capsys):
    run, pngs = binary_run
    base = ["predict", "--checkpoint", str(run), "--dir", str(pngs)]
    assert main([*base, "--explain", str(tmp_path / "a"), "--target", "abnormal"]) == 0
    rec = json.loads((tmp_path / "a" / "img0.json").read_text())
    assert rec["output"]["index"] == 0 and rec["output"]["name"] == "abnormal"
    assert rec["output"]["chosen"] == "the only output" and rec["output"]["probability"] == rec["p_abnormal"]
    capsys.readouterr()
    assert main([*base, "--explain", str(tmp_path / "b"), "--target", "1"]) == 2
    one_line_error(capsys, "--target 1: output index out of range", "0 abnormal")
    assert main([*base, "--target", "0"]) == 2
    one_line_error(capsys, "add --explain DIR")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def findings_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings")
    assert main(["train", *SMALL, "--task", "findings", "--cache", str(root / "cache"), "--out", str(root / "run")]) == 0
    return root / "run", _pngs(root / "run", root / "pngs")


def test_findings_explains_each_images_most_probable_finding_on_both_tracks(findings_run, tmp_path, capsys):
    run, pngs = findings_run
    maps, recs = {}, {}
    for track in ("numpy", "torch"):
        capsys.readouterr()
        out = tmp_path / track
        assert main(["predict", "--checkpoint", str(run), "--dir", str(pngs), "--json", "--track", track,
                     "--explain", str(out), "--method", "saliency"]) == 0
        rows = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
        recs[track] = [json.loads((out / f"img{i}.json").read_text()) for i in range(3)]
        maps[track] = np.stack([np.load(out / f"img{i}.npy", allow_pickle=False) for i in range(3)])
        for rec in recs[track]:
            probs = rows[rec["image"]]["probabilities"]
            best = max(probs, key=probs.get)
            assert rec["output"]["name"] == best and rec["output"]["chosen"] == "most probable output"
            assert rec["output"]["index"] == list(FINDINGS).index(best)
            assert rec["output"]["probability"] == probs[best] and "p_abnormal" not in rec
    np.testing.assert_allclose(maps["numpy"], maps["torch"], rtol=1e-4, atol=1e-5 * np.abs(maps["torch"]).max())
    assert np.any(maps["numpy"] != 0)


def test_findings_target_by_name_explains_that_finding(findings_run, tmp_path):
    from chexvision import checkpoint as ckpt
    from chexvision.data import load_image
    from chexvision.evaluate import load_engine, load_standardizer
    from chexvision.predict import model_inputs
    from numpy_nn.explain import GradCAM

    run, pngs = findings_run
    out = tmp_path / "maps"
    assert main(["predict", "--checkpoint", str(run), "--dir", str(pngs), "--explain", str(out),
                 "--target", "cardiomegaly"]) == 0
    rec = json.loads((out / "img2.json").read_text())
    assert rec["output"]["name"] == "cardiomegaly" and rec["output"]["index"] == 2
    assert rec["output"]["chosen"] == "--target" and rec["method"] == "gradcam"
    assert rec["output"]["verdict"] in ("flagged", "not flagged")
    checkpoint = ckpt.load_checkpoint(run)
    engine = load_engine(checkpoint, "numpy")
    x = model_inputs(engine, load_standardizer(checkpoint), load_image(pngs / "img2.png", 16)[None],
                     checkpoint.model_spec)
    expected = GradCAM(engine.model, rec["layer"]).attribute(x, target=2)[0, 0]
    np.testing.assert_array_equal(np.load(out / "img2.npy", allow_pickle=False), expected.astype(np.float64))
