"""``--model densenet121`` through the application: one epoch on both tracks, a torch-trained
checkpoint served by the NumPy track with torch blocked, ``convert`` (.pth -> .npz, legacy key
names), ``--pretrained`` from files, the gray-to-RGB input rule in both tracks, and the one-line
errors (``--amp`` off CUDA, ``--pretrained`` elsewhere, images too small, offline ImageNet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chexvision import checkpoint as ckpt
from chexvision.cli import main
from chexvision.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
F32 = {"rtol": 1e-4, "atol": 1e-5}
# 64 synthetic 32×32 images, batches of 16: densenet121 at its smallest useful size (block 4 at 1×1)
TINY = ["--dataset", "synthetic", "--synthetic-size", "64", "--image-size", "32", "--model", "densenet121",
        "--batch-size", "16", "--epochs", "1", "--no-progress"]


def _train(base: Path, track: str) -> Path:
    out = base / track
    assert main(["train", *TINY, "--cache", str(base / "cache"), "--out", str(out), "--track", track]) == 0
    return out


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("densenet"), "torch")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 36), dtype=np.uint8)).save(path)
    return path


def check_densenet_run(run: Path) -> None:
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["model"]["kind"] == "densenet121" and config["train"]["dropout"] == 0.0
    state = ckpt.read_npz(run / "best" / ckpt.MODEL_FILE)
    assert len(state) == 727 and state["classifier.weight"].shape == (1, 1024)
    assert "features.denseblock4.denselayer16.conv2.weight" in state
    std = ckpt.read_npz(run / "best" / "standardizer.npz")
    assert {float(a.min()) for a in std.values()} >= {0.0}  # the fixed x / 255, not fitted statistics
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])


def test_one_epoch_on_the_torch_track(torch_run):
    check_densenet_run(torch_run)


@pytest.mark.slow  # 3 NumPy densenet121 steps at 16×32² and a validation pass: ~10 s idle, minutes under load
def test_one_epoch_on_the_numpy_track(tmp_path):
    check_densenet_run(_train(tmp_path, "numpy"))


def test_torch_trained_densenet_predicts_with_the_numpy_track_and_torch_blocked(torch_run, image, capsys):
    probs = {}
    for track in ("torch", "numpy"):
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(torch_run), "--image", str(image), "--json",
                     "--track", track]) == 0
        probs[track] = json.loads(capsys.readouterr().out)[0]["p_abnormal"]
    np.testing.assert_allclose(probs["numpy"], probs["torch"], **F32)
    code = (
        "import importlib.abc, json, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from chexvision.cli import main\n"
        f"rc = main(['predict', '--checkpoint', {str(torch_run)!r}, '--image', {str(image)!r}, '--json', "
        "'--track', 'numpy'])\n"
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(json.loads(res.stdout)[0]["p_abnormal"], probs["torch"], **F32)


def _legacy_pth(path: Path) -> dict:
    """A torchvision-style densenet121 checkpoint: legacy ``norm.1`` names, no counters, 1000 classes."""
    from torch_ref.models import densenet121

    torch.manual_seed(3)
    state = {}
    for k, v in densenet121().state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if "denselayer" in k:
            for new, old in (("norm1.", "norm.1."), ("norm2.", "norm.2."), ("conv1.", "conv.1."), ("conv2.", "conv.2.")):
                k = k.replace(new, old)
        state[k] = v.clone()
    torch.save(state, path)
    return state


def test_convert_pth_to_npz_and_pretrained_from_either_file(tmp_path, capsys):
    pth, npz = tmp_path / "dn.pth", tmp_path / "dn.npz"
    legacy = _legacy_pth(pth)
    assert main(["convert", "--pth", str(pth), "--out", str(npz)]) == 0
    assert "727" not in capsys.readouterr().out  # counters absent in the source: 605 arrays
    with np.load(npz, allow_pickle=False) as z:
        converted = {k: z[k] for k in z.files}
    assert "features.denseblock1.denselayer1.norm1.weight" in converted and len(converted) == len(legacy)
    np.testing.assert_array_equal(converted["features.denseblock2.denselayer3.conv2.weight"],
                                  legacy["features.denseblock2.denselayer3.conv.2.weight"].numpy())
    assert main(["convert", "--pth", str(pth), "--out", str(npz)]) == 2  # never overwritten unasked
    from chexvision.tracks import make_engine, model_spec

    spec = model_spec("densenet121", 32)
    for track, source in (("numpy", npz), ("torch", pth), ("numpy", pth)):
        engine = make_engine(track, spec)
        engine.build_model(0)
        fresh_head = engine.model_state()["classifier.weight"].copy()
        engine.load_pretrained(str(source))
        state = engine.model_state()
        np.testing.assert_array_equal(state["features.conv0.weight"], converted["features.conv0.weight"])
        np.testing.assert_array_equal(state["features.norm5.running_var"], converted["features.norm5.running_var"])
        assert int(state["features.norm0.num_batches_tracked"]) == 0
        np.testing.assert_array_equal(state["classifier.weight"], fresh_head)  # the task's head, (1, 1024)


def test_pretrained_errors_are_one_line(tmp_path, monkeypatch):
    from chexvision.densenet import with_backbone
    from chexvision.tracks import make_engine, model_spec

    engine = make_engine("torch", model_spec("densenet121", 32))
    engine.build_model(0)

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="--pretrained imagenet: cannot fetch https://download.pytorch.org/models/"
                                        "densenet121-a639ec97.pth"):
        engine.load_pretrained("imagenet")
    bad = tmp_path / "cnn.npz"
    np.savez(bad, **{"features.0.weight": np.zeros((4, 1, 3, 3), np.float32)})
    with pytest.raises(UserError, match="not a densenet121 state_dict: .* missing .* unexpected"):
        engine.load_pretrained(str(bad))
    with pytest.raises(UserError, match="no such file"):
        engine.load_pretrained(str(tmp_path / "absent.pth"))
    own = engine.model_state()
    with pytest.raises(UserError, match="another shape"):
        with_backbone(own, {**own, "features.conv0.weight": np.zeros((64, 1, 7, 7), np.float32)}, "x.npz")


@pytest.mark.parametrize("extra, message", [
    (["--amp"], "--amp (mixed precision) needs --track torch --device cuda"),
    (["--model", "mlp", "--pretrained", "imagenet"], "--pretrained applies to --model densenet121 only"),
    (["--image-size", "16"], "densenet121 needs images of at least 29×29"),
])
def test_bad_options_fail_in_one_line(tmp_path, capsys, extra, message):
    args = ["train", *TINY, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_gray_input_rule_is_the_same_in_both_tracks():
    """(N, 1, H, W) in [0, 1] -> repeated to RGB, ImageNet-normalised, in both tracks: same logits
    and same dL/dx (eval mode, float64, the full densenet121)."""
    from chexvision.densenet import GrayDenseNet
    from chexvision.densenet_torch import GrayDenseNet as TorchGray
    from torch_ref.exchange import torch_to_numpy

    t_model = TorchGray(out_features=2, dtype=torch.float64).eval()
    np_model = torch_to_numpy(t_model, GrayDenseNet(out_features=2, dtype=np.float64)).eval()
    x = np.random.default_rng(0).random((1, 1, 32, 32))
    xt = torch.tensor(x, requires_grad=True)
    y = t_model(xt)
    np.testing.assert_allclose(np_model(x), y.detach().numpy(), rtol=1e-7, atol=1e-7)
    up = np.random.default_rng(1).standard_normal((1, 2))
    y.backward(torch.from_numpy(up))
    np.testing.assert_allclose(np_model.backward(up), xt.grad.numpy(), rtol=1e-7, atol=1e-7)
    rgb = (x - np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)) / np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    plain = torch_to_numpy(t_model, __import__("numpy_nn").models.densenet121(num_classes=2, dtype=np.float64)).eval()
    np.testing.assert_allclose(np_model(x), plain(rgb), rtol=1e-12, atol=1e-12)


def test_bench_profile_runs_on_a_small_image():
    """The densenet bench's profile attributes the step's time to layer kinds (tiny size here)."""
    from chexvision.bench.densenet import profile_numpy_step

    rows = profile_numpy_step(2, 32)
    kinds = {r["profile"] for r in rows}
    assert {"conv 1x1 forward", "conv 3x3 backward", "batchnorm forward", "pool backward"} <= kinds
    total = rows[-1]["seconds"]
    assert rows[-1]["profile"] == "total train step b2 32^2" and abs(sum(r["seconds"] for r in rows[:-1]) - total) < 1e-6


@pytest.mark.slow  # builds and times densenet121 at 224² on both tracks: minutes
def test_bench_densenet_section_prints_ratios(capsys):
    assert main(["bench", "--only", "densenet", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "densenet" in out and "inference b1 224^2" in out and "ratio" in out and "peak memory" in out
