"""Explanations: the NumPy maps (hand-written backward + numpy_nn hooks) equal torch_ref's
(autograd + torch's hooks), and our torch Grad-CAM / saliency equal captum's.

Same weights (copied with ``torch_to_numpy``), BatchNorm running statistics away from their
initial (0, 1) so eval mode matters, the model left in train mode and the first layer skipping
dL/dx as in training (the explanation must switch both), several seeded inputs, every output of
a multi-output model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_nn import explain as nex
from numpy_nn import models as nmodels
from parity.helpers import TORCH_DTYPE, assert_close, make_input
from torch_ref import explain as tex
from torch_ref import models as tmodels
from torch_ref.exchange import torch_to_numpy

METHODS = ["saliency", "signed_saliency", "gradxinput", "smoothgrad", "smoothgrad_raw", "gradcam"]


def twin_models(kind: str, out_features: int, dtype=np.float64, seed: int = 0):
    torch.manual_seed(seed)
    tdt = TORCH_DTYPE[np.dtype(dtype).type]
    if kind == "mlp":
        t = tmodels.MLP(in_features=144, hidden=(16, 8), out_features=out_features, dropout=0.3, dtype=tdt)
        n = nmodels.MLP(in_features=144, hidden=(16, 8), out_features=out_features, dropout=0.3, dtype=dtype)
        shape = (3, 144)
    else:
        t = tmodels.CNN(channels=(4, 6, 8), out_features=out_features, dropout=0.2, dtype=tdt)
        n = nmodels.CNN(channels=(4, 6, 8), out_features=out_features, dropout=0.2, dtype=dtype)
        shape = (3, 1, 12, 12)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    torch_to_numpy(t, n)
    n.train()  # as after a training epoch: the explanation must switch to eval mode itself
    t.train()
    first = n.layers[0] if kind == "mlp" else n.features[0]
    first.needs_input_grad = False  # as the training engine leaves it
    return n, t, shape


def explain_both(method: str, n, t, x: np.ndarray, target):
    xt = torch.tensor(x)
    if method == "saliency":
        return nex.Saliency(n).attribute(x, target=target), tex.Saliency(t).attribute(xt, target=target)
    if method == "signed_saliency":
        return (nex.Saliency(n).attribute(x, target=target, abs=False),
                tex.Saliency(t).attribute(xt, target=target, abs=False))
    if method == "gradxinput":
        return nex.InputXGradient(n).attribute(x, target=target), tex.InputXGradient(t).attribute(xt, target=target)
    if method in ("smoothgrad", "smoothgrad_raw"):  # mean |gradient| (captum's NoiseTunnel) / mean gradient (paper)
        kw = {"target": target, "n_samples": 4, "noise_level": 0.2, "seed": 7, "abs": method == "smoothgrad"}
        return (nex.SmoothGrad(nex.Saliency(n)).attribute(x, **kw),
                tex.SmoothGrad(tex.Saliency(t)).attribute(xt, **kw))
    layer = nex.default_layer(n)
    assert layer == tex.default_layer(t) == "features.7"
    return nex.GradCAM(n, layer).attribute(x, target=target), tex.GradCAM(t, layer).attribute(xt, target=target)


CASES = [(kind, m) for kind in ("mlp", "cnn") for m in METHODS if not (kind == "mlp" and m == "gradcam")]


@pytest.mark.parametrize("kind,method", CASES, ids=[f"{k}-{m}" for k, m in CASES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maps_match_torch_float64(kind, method, seed):
    n, t, shape = twin_models(kind, out_features=1, seed=seed)
    x = make_input(shape, np.float64, seed=seed + 10)
    m_np, m_t = explain_both(method, n, t, x, target=None)
    assert_close(m_np, m_t, f"{kind} {method} map")
    assert np.any(m_np != 0), "an all-zero map would match trivially"
    # the explanation restored what it switched
    assert n.training and t.training
    assert (n.layers[0] if kind == "mlp" else n.features[0]).needs_input_grad is False
    assert all(p.grad is None for p in n.parameters())


@pytest.mark.parametrize("kind,method", CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_each_output_of_a_multi_output_model(kind, method):
    n, t, shape = twin_models(kind, out_features=3, seed=4)
    x = make_input(shape, np.float64, seed=5)
    maps = []
    for k in range(3):
        m_np, m_t = explain_both(method, n, t, x, target=k)
        assert_close(m_np, m_t, f"{kind} {method} map of output {k}")
        maps.append(m_np)
    assert not np.allclose(maps[0], maps[1]), "different outputs should get different maps"


def test_maps_match_torch_float32():
    n, t, shape = twin_models("cnn", out_features=2, dtype=np.float32)
    x = make_input(shape, np.float32, seed=3)
    for method in METHODS:
        m_np, m_t = explain_both(method, n, t, x, target=1)
        assert_close(m_np, m_t, f"float32 {method} map")


def test_target_is_required_for_several_outputs_and_checked():
    n, t, shape = twin_models("cnn", out_features=3)
    x = make_input(shape, np.float64)
    for module, model, inp in ((nex, n, x), (tex, t, torch.tensor(x))):
        with pytest.raises(ValueError, match="has 3 outputs: pass target"):
            module.Saliency(model).attribute(inp)
        with pytest.raises(ValueError, match="target 3 out of range"):
            module.GradCAM(model, "features.7").attribute(inp, target=3)
        with pytest.raises(ValueError, match="no layer named 'features.99'"):
            module.GradCAM(model, "features.99")


def test_gradcam_on_a_non_convolutional_layer_is_refused():
    n, t, shape = twin_models("mlp", out_features=1)
    x = make_input(shape, np.float64)
    for module, model, inp in ((nex, n, x), (tex, t, torch.tensor(x))):
        with pytest.raises(ValueError, match="needs a convolutional"):
            module.default_layer(model)
        with pytest.raises(ValueError, match="needs a convolutional layer"):
            module.GradCAM(model, "layers.0").attribute(inp)


@pytest.mark.parametrize("in_hw,out_hw", [((5, 7), (20, 13)), ((4, 4), (3, 9)), ((2, 2), (64, 64)),
                                          ((6, 5), (6, 5)), ((1, 3), (4, 4))])
def test_bilinear_upsampling_is_torchs(in_hw, out_hw):
    x = make_input((2, 3, *in_hw), np.float64)
    expected = F.interpolate(torch.tensor(x), size=out_hw, mode="bilinear", align_corners=False)
    assert_close(nex.upsample_bilinear(x, out_hw), expected, f"upsample {in_hw} -> {out_hw}")


def test_smoothgrad_raw_is_the_mean_gradient_and_abs_is_captums_mean_of_abs():
    """abs=False averages the signed gradients (the paper); the default averages |gradient|, and
    |mean| <= mean |.| with strict inequality somewhere (the noisy gradients disagree in sign)."""
    n, t, shape = twin_models("cnn", out_features=1, seed=2)
    x = make_input(shape, np.float64, seed=11)
    kw = {"n_samples": 5, "noise_level": 0.3, "seed": 3}
    raw = nex.SmoothGrad(nex.Saliency(n)).attribute(x, abs=False, **kw)
    mean_abs = nex.SmoothGrad(nex.Saliency(n)).attribute(x, **kw)
    sigma = nex.noise_sigma(x, 0.3)
    rng = np.random.default_rng(3)
    grads = [nex.input_gradient(n, x + sigma * rng.standard_normal(x.shape)) for _ in range(5)]
    assert_close(raw, np.mean(grads, axis=0), "SmoothGrad abs=False = mean of the raw gradients")
    assert_close(mean_abs, np.mean(np.abs(grads), axis=0), "SmoothGrad default = mean of |gradient|")
    assert np.all(np.abs(raw) <= mean_abs + 1e-12) and np.any(np.abs(raw) < mean_abs - 1e-6)


# -- an established implementation: captum --------------------------------------------------------
def test_our_torch_gradcam_and_saliency_equal_captums():
    captum_attr = pytest.importorskip("captum.attr", reason="captum not installed (pip install -e '.[dev]')")
    n, t, shape = twin_models("cnn", out_features=2)
    t.eval()  # captum does not switch modes
    xt = torch.tensor(make_input(shape, np.float64, seed=9))
    for k in range(2):
        ref = captum_attr.LayerGradCam(t, t.features[7]).attribute(xt, target=k, relu_attributions=True)
        ref = captum_attr.LayerAttribution.interpolate(ref, tuple(xt.shape[2:]), interpolate_mode="bilinear")
        assert_close(tex.GradCAM(t, "features.7").attribute(xt, target=k), ref, f"Grad-CAM vs captum, output {k}")
        ref_cam_small = captum_attr.LayerGradCam(t, t.features[7]).attribute(xt, target=k, relu_attributions=True)
        assert_close(tex.GradCAM(t, "features.7").attribute(xt, target=k, upsample=False), ref_cam_small,
                     "Grad-CAM before upsampling vs captum")
        assert_close(tex.Saliency(t).attribute(xt, target=k), captum_attr.Saliency(t).attribute(xt, target=k),
                     f"saliency vs captum, output {k}")
        assert_close(tex.InputXGradient(t).attribute(xt, target=k),
                     captum_attr.InputXGradient(t).attribute(xt, target=k), f"input x gradient vs captum, output {k}")
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(t))  # captum's SmoothGrad averages |gradient| too
    sigma = 0.2 * float(xt[0].max() - xt[0].min())
    rng = np.random.default_rng(5)
    x1 = xt[:1]
    noise = [torch.from_numpy(rng.standard_normal(tuple(x1.shape))) for _ in range(3)]
    mean_abs = sum(captum_attr.Saliency(t).attribute(x1 + sigma * e, target=0) for e in noise) / 3
    assert_close(tex.SmoothGrad(tex.Saliency(t)).attribute(x1, target=0, n_samples=3, noise_level=0.2, seed=5),
                 mean_abs, "SmoothGrad = mean of captum's |gradient| over the same noise")
    assert nt.attribute(x1, nt_type="smoothgrad", nt_samples=3, stdevs=sigma, target=0).min() >= 0


# -- DenseNet (torchvision's architecture, reduced) -----------------------------------------------------
def densenet_twins(out_features: int = 2):
    from numpy_nn import densenet as ndn
    from torch_ref import densenet as tdn

    kwargs = {"growth_rate": 4, "block_config": (2, 2), "num_init_features": 8, "bn_size": 2,
              "num_classes": out_features, "in_channels": 1}
    torch.manual_seed(3)
    t = tdn.DenseNet(**kwargs, dtype=torch.float64)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    n = ndn.DenseNet(**kwargs, dtype=np.float64)
    torch_to_numpy(t, n)
    n.features.conv0.needs_input_grad = False  # as a training engine would leave it
    return n, t


@pytest.mark.parametrize("method", ["saliency", "gradxinput", "smoothgrad", "gradcam", "gradcam-transition1"])
def test_densenet_maps_match_torch_float64(method):
    n, t = densenet_twins()
    x = make_input((2, 1, 32, 32), np.float64, seed=8)
    xt = torch.tensor(x)
    assert nex.default_layer(n) == tex.default_layer(t) == "features.denseblock2"
    for k in range(2):
        if method.startswith("gradcam"):
            layer = "features.transition1" if method.endswith("transition1") else nex.default_layer(n)
            m_np = nex.GradCAM(n, layer).attribute(x, target=k)
            m_t = tex.GradCAM(t, layer).attribute(xt, target=k)
        else:
            m_np, m_t = explain_both(method, n, t, x, target=k)
        assert_close(m_np, m_t, f"densenet {method} map of output {k}")
        assert np.any(m_np != 0)
