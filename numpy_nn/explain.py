"""Explanations: where in the input a model's logit comes from, through the hand-written backward.

Twin: ``torch_ref/explain.py`` (the same classes computed with autograd and torch's hooks; the
parity suite, ``parity/test_explain.py``, checks that both give the same maps).

One small class per method, one verb, as captum presents them::

    Saliency(model).attribute(x, target=k)             # |d y_k / d x|
    InputXGradient(model).attribute(x, target=k)       # x · d y_k / d x
    SmoothGrad(Saliency(model)).attribute(x, target=k)  # mean over noisy copies of x
    GradCAM(model, layer="features.7").attribute(x, target=k)

A saliency map is the backward pass carried one step further than training needs: training
stops at the parameters (the first layer even skips dL/dx, ``needs_input_grad = False``), an
explanation wants the gradient with respect to the image itself. Every method here:

* runs the model in eval mode (dropout off, BatchNorm on its running statistics, so each
  example's logits depend on that example alone and one backward gives every example's map),
  restoring each module's mode afterwards;
* seeds the backward with a one-hot upstream gradient: e_k in column ``target`` of the
  (N, O) logits, so the backward computes d y_k / d(·) for every example at once;
* turns ``needs_input_grad`` on where a layer had it off, and leaves the parameters' ``.grad``
  exactly as it found them (an explanation is not a training step).

``target`` picks the output of a multi-output model (column k of the logits, e.g. one of 14
findings); it may be left out when the model has a single output.
"""

from __future__ import annotations

import numpy as np

from .module import Module


def resolve_target(n_outputs: int, target: int | None) -> int:
    """Column of the logits to explain; ``None`` is allowed for a single-output model only."""
    if target is None:
        if n_outputs != 1:
            raise ValueError(f"the model has {n_outputs} outputs: pass target=k (0 <= k < {n_outputs})")
        return 0
    target = int(target)
    if not 0 <= target < n_outputs:
        raise ValueError(f"target {target} out of range for a model with {n_outputs} outputs")
    return target


def input_gradient(model: Module, x: np.ndarray, target: int | None = None) -> np.ndarray:
    """d y_target / d x for every example, through ``model.backward``; y = model(x) in eval mode.

    Shape: x (N, ...) -> (N, ...), the same shape and dtype.
    """
    with _ExplainMode(model, input_grad=True):
        y = model(x)  # (N, O)
        grad_y = _one_hot(y, target)  # e_k in every row: d(Σ_n y_nk) / d y
        grad_x = model.backward(grad_y)
    return grad_x.reshape(x.shape)


class Saliency:
    """Input-gradient saliency (Simonyan et al., 2014): ``|d y_k / d x|`` (``abs=True``) or the
    signed gradient.

    A first-order Taylor expansion y_k(x + δ) ≈ y_k(x) + ⟨∇ₓ y_k, δ⟩ says how much a small change
    of each pixel moves the logit: large |∂y_k/∂x_i| = a pixel the logit is sensitive to.

    Shape: x (N, ...) -> (N, ...). Twin: ``torch_ref.explain.Saliency`` (captum's ``Saliency``).
    """

    def __init__(self, model: Module):
        self.model = model

    def attribute(self, x: np.ndarray, target: int | None = None, abs: bool = True) -> np.ndarray:
        grad = input_gradient(self.model, x, target)
        return np.abs(grad) if abs else grad


class InputXGradient:
    """Gradient × input (Shrikumar et al., 2016): ``x ⊙ d y_k / d x``.

    For a model linear in x, y_k = Σ_i w_i x_i + b, this is w_i x_i: each pixel's exact share of
    the logit (relative to an all-zero input, here the training mean after standardisation).
    Signed: positive where a pixel pushes the logit up.

    Shape: x (N, ...) -> (N, ...). Twin: ``torch_ref.explain.InputXGradient``.
    """

    def __init__(self, model: Module):
        self.model = model

    def attribute(self, x: np.ndarray, target: int | None = None) -> np.ndarray:
        return x * input_gradient(self.model, x, target)


class SmoothGrad:
    """SmoothGrad (Smilkov et al., 2017): the mean of a method's maps over noisy copies of x,

        M̂(x) = (1/S) Σ_s M(x + ε_s),   ε_s ~ N(0, σ² I),  σ = noise_level · (max x_n − min x_n)

    with σ a fraction of each example's value range (the paper's 10–20 %; captum's
    ``NoiseTunnel(method).attribute(x, nt_type="smoothgrad", stdevs=σ)`` takes σ itself). The
    noise averages out the gradient's pixel-to-pixel jitter (ReLU kinks, pooling ties).

    What is averaged is whatever ``method`` returns, and keyword arguments pass through to it.
    Over ``Saliency`` (``abs=True``, its default) that is the mean of |∂y_k/∂x| — what captum's
    ``NoiseTunnel(Saliency(model))`` computes, and what ``predict --method smoothgrad`` shows.
    The paper averages the raw gradient, M̂ = (1/S) Σ_s ∂y_k/∂x (x + ε_s), and takes |·| only to
    draw it: ``SmoothGrad(Saliency(model)).attribute(x, target=k, abs=False)`` gives that signed
    mean (signs that disagree across noisy copies cancel, so it is never larger than the mean
    of |gradient|).

    The noise is drawn by NumPy, ``np.random.default_rng(seed).standard_normal(x.shape)`` once
    per sample in order, so the torch twin can use the very same draws.

    Args:
        method: an attribution object with ``attribute(x, target=..., **kwargs)`` (e.g.
            ``Saliency(model)``).

    Shape: x (N, ...) -> (N, ...). Twin: ``torch_ref.explain.SmoothGrad``.
    """

    def __init__(self, method):
        self.method = method

    def attribute(self, x: np.ndarray, target: int | None = None, n_samples: int = 25,
                  noise_level: float = 0.15, seed: int = 0, **kwargs) -> np.ndarray:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        sigma = noise_sigma(x, noise_level)  # (N, 1, ..., 1)
        rng = np.random.default_rng(seed)
        total = np.zeros(x.shape, dtype=x.dtype)
        for _ in range(n_samples):
            noisy = x + sigma * rng.standard_normal(x.shape).astype(x.dtype)
            total += self.method.attribute(noisy, target=target, **kwargs)
        return total / n_samples


def noise_sigma(x: np.ndarray, noise_level: float) -> np.ndarray:
    """σ_n = noise_level · (max x_n − min x_n) per example, shaped to broadcast over x."""
    flat = x.reshape(len(x), -1)  # (N, ...) -> (N, D)
    span = flat.max(axis=1) - flat.min(axis=1) if flat.shape[1] else np.zeros(len(x), x.dtype)
    return (noise_level * span).reshape((len(x),) + (1,) * (x.ndim - 1)).astype(x.dtype)


class GradCAM:
    """Grad-CAM (Selvaraju et al., 2017) at a convolutional layer named by its dotted name.

    With A (N, C, h, w) the layer's output and y_k the explained logit:

        w_nc  = (1 / hw) Σ_ij ∂y_nk / ∂A_ncij       (global-average-pooled gradient, (N, C))
        L_n   = ReLU( Σ_c w_nc A_nc )                (N, h, w)
        map_n = bilinear upsampling of L_n to the input's H × W

    w_nc says how much channel c, as a whole, raises y_k; the ReLU keeps the regions that argue
    *for* the output. The layer's A is caught by a forward hook and ∂y/∂A by a full backward
    hook (the layer's ``grad_output``), as captum's ``LayerGradCam`` and pytorch-grad-cam do in
    torch. The upsampling is torch's ``F.interpolate(mode="bilinear", align_corners=False)``
    (``upsample_bilinear``).

    Args:
        model: a convolutional numpy_nn model.
        layer: the dotted name of a module whose output is (N, C, h, w), as ``named_modules()``
            gives it (and as it prefixes the ``state_dict`` keys), e.g. ``"features.7"``.

    Shape: x (N, C_in, H, W) -> (N, 1, H, W) (``upsample=False``: (N, 1, h, w)).
    Twin: ``torch_ref.explain.GradCAM``.
    """

    def __init__(self, model: Module, layer: str):
        modules = dict(model.named_modules())
        if layer not in modules or layer == "":
            names = [n for n in modules if n]
            raise ValueError(f"no layer named {layer!r} in {type(model).__name__}; layers: {', '.join(names)}")
        self.model, self.layer, self.module = model, layer, modules[layer]

    def attribute(self, x: np.ndarray, target: int | None = None, relu: bool = True,
                  upsample: bool = True) -> np.ndarray:
        # Copies: a layer's output or upstream gradient may be a view of a buffer that later
        # layers write into (DenseNet's shared block buffers).
        caught: dict[str, np.ndarray] = {}
        keep = self.module.register_forward_hook(lambda m, args, out: caught.__setitem__("A", out.copy()))
        keep_grad = self.module.register_full_backward_hook(
            lambda m, grad_in, grad_out: caught.__setitem__("dA", grad_out[0].copy()))
        try:
            with _ExplainMode(self.model, input_grad=False):
                y = self.model(x)  # (N, O)
                self.model.backward(_one_hot(y, target))
        finally:
            keep.remove()
            keep_grad.remove()
        a, da = caught["A"], caught["dA"]
        if a.ndim != 4:
            raise ValueError(f"Grad-CAM needs a convolutional layer with output (N, C, h, w); "
                             f"{self.layer!r} gives shape {a.shape}")
        weights = da.mean(axis=(2, 3), keepdims=True)  # (N, C, h, w) -> (N, C, 1, 1)
        cam = (weights * a).sum(axis=1, keepdims=True)  # Σ_c w_c A_c: (N, C, h, w) -> (N, 1, h, w)
        if relu:
            cam = np.maximum(cam, 0)
        return upsample_bilinear(cam, x.shape[2:]) if upsample else cam


def default_layer(model: Module) -> str:
    """Grad-CAM's default layer: the last entry of ``model.features`` that is or holds a
    convolution (the CNN's residual block ``features.7``; DenseNet's last dense block)."""
    from .conv import Conv2d

    features = getattr(model, "features", None)
    if not isinstance(features, Module):
        raise ValueError(f"Grad-CAM needs a convolutional model; {type(model).__name__} has no convolutional layer")
    last = None
    for name, child in features._modules.items():
        if any(isinstance(m, Conv2d) for m in child.modules()):
            last = f"features.{name}"
    if last is None:
        raise ValueError(f"Grad-CAM needs a convolutional model; {type(model).__name__}.features holds no convolution")
    return last


def upsample_bilinear(x: np.ndarray, size) -> np.ndarray:
    """torch's ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` in NumPy.

    Output pixel i of n_out samples the input at the source coordinate
    s = max(0, (i + ½)·n_in / n_out − ½) (pixel centres aligned, clamped at the start, as torch's
    ``area_pixel_compute_source_index``); with i₀ = ⌊s⌋, i₁ = min(i₀ + 1, n_in − 1) and λ = s − i₀
    the value is (1 − λ)·x[i₀] + λ·x[i₁], along H then W (the weights separate).

    Shape: (N, C, h, w) -> (N, C, H, W).
    """
    out_h, out_w = (int(s) for s in size)
    rows = _interp_matrix(x.shape[2], out_h, x.dtype)  # (H, h)
    cols = _interp_matrix(x.shape[3], out_w, x.dtype)  # (W, w)
    # (H, h) @ (N, C, h, w) @ (w, W) -> (N, C, H, W)
    return rows @ x @ cols.T


def _interp_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    """(n_out, n_in) matrix of the 1-D linear interpolation weights described above."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = src.astype(np.int64)  # floor, src >= 0
    lam = src - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(dtype)


def _one_hot(y: np.ndarray, target: int | None) -> np.ndarray:
    """Upstream gradient e_k for every row of the (N, O) logits."""
    k = resolve_target(y.shape[1], target)
    grad = np.zeros_like(y)
    grad[:, k] = 1
    return grad


class _ExplainMode:
    """Eval mode, dL/dx at every layer (``input_grad``), parameters' ``.grad`` untouched; all
    restored on exit."""

    def __init__(self, model: Module, input_grad: bool):
        self.model, self.input_grad = model, input_grad

    def __enter__(self):
        mods = list(self.model.modules())
        self.modes = [(m, m.training) for m in mods]
        self.skipping = [m for m in mods if getattr(m, "needs_input_grad", True) is False] if self.input_grad else []
        self.grads = [(p, p.grad) for p in self.model.parameters()]
        self.model.eval()
        for m in self.skipping:
            m.needs_input_grad = True
        for p, _ in self.grads:
            p.grad = None  # the backward adds into .grad: give it fresh arrays, restore the old ones after
        return self

    def __exit__(self, *exc):
        for m, mode in self.modes:
            object.__setattr__(m, "training", mode)
        for m in self.skipping:
            m.needs_input_grad = False
        for p, g in self.grads:
            p.grad = g
