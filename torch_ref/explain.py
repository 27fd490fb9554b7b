"""Explanations with autograd and torch's hooks. Twin: ``numpy_nn/explain.py`` (same classes,
arguments and shapes; the derivations are in its docstrings; ``parity/test_explain.py`` checks
that both give the same maps).

The gradients come from ``torch.autograd.grad`` (nothing is accumulated into the parameters'
``.grad``); the model runs in eval mode, restored afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def input_gradient(model: nn.Module, x: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """d y_target / d x for every example (autograd); y = model(x) in eval mode."""
    with _EvalMode(model):
        x = x.detach().requires_grad_(True)
        y = model(x)  # (N, O)
        k = resolve_target(y.shape[1], target)
        (grad,) = torch.autograd.grad(y[:, k].sum(), x)  # Σ_n y_nk: each row's y depends on its own x
    return grad


class Saliency:
    """``|d y_k / d x|`` (``abs=True``) or the signed gradient. Twin: ``numpy_nn.explain.Saliency``."""

    def __init__(self, model: nn.Module):
        self.model = model

    def attribute(self, x: torch.Tensor, target: int | None = None, abs: bool = True) -> torch.Tensor:
        grad = input_gradient(self.model, x, target)
        return grad.abs() if abs else grad


class InputXGradient:
    """``x ⊙ d y_k / d x``. Twin: ``numpy_nn.explain.InputXGradient``."""

    def __init__(self, model: nn.Module):
        self.model = model

    def attribute(self, x: torch.Tensor, target: int | None = None) -> torch.Tensor:
        return x.detach() * input_gradient(self.model, x, target)


class SmoothGrad:
    """Mean of ``method``'s maps over x + ε_s, ε_s ~ N(0, σ²), σ = noise_level·(max x_n − min x_n).

    The noise is NumPy's ``default_rng(seed).standard_normal(x.shape)``, one draw per sample in
    order, exactly as in the NumPy twin. Keyword arguments pass through to ``method``: over
    ``Saliency`` the default averages |gradient| (captum's ``NoiseTunnel(Saliency)``), ``abs=False``
    the raw gradient (the paper's definition). Twin: ``numpy_nn.explain.SmoothGrad``.
    """

    def __init__(self, method):
        self.method = method

    def attribute(self, x: torch.Tensor, target: int | None = None, n_samples: int = 25,
                  noise_level: float = 0.15, seed: int = 0, **kwargs) -> torch.Tensor:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        x = x.detach()
        flat = x.reshape(len(x), -1)  # (N, ...) -> (N, D)
        sigma = (noise_level * (flat.amax(1) - flat.amin(1))).reshape((len(x),) + (1,) * (x.dim() - 1))
        rng = np.random.default_rng(seed)
        np_dtype = np.float64 if x.dtype == torch.float64 else np.float32
        total = torch.zeros_like(x)
        for _ in range(n_samples):
            eps = torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np_dtype)).to(x.device)
            total += self.method.attribute(x + sigma * eps, target=target, **kwargs)
        return total / n_samples


class GradCAM:
    """ReLU(Σ_c w_c A_c), w_c the spatial mean of d y_k / d A_c, at ``layer`` (a dotted name),
    upsampled with ``F.interpolate(mode="bilinear", align_corners=False)``.

    A is caught by ``register_forward_hook`` and d y / d A by ``register_full_backward_hook``
    (the layer's ``grad_output``), the input made to require grad so the hooks fire as for any
    inner layer. Twin: ``numpy_nn.explain.GradCAM``.
    """

    def __init__(self, model: nn.Module, layer: str):
        modules = dict(model.named_modules())
        if layer not in modules or layer == "":
            names = [n for n in modules if n]
            raise ValueError(f"no layer named {layer!r} in {type(model).__name__}; layers: {', '.join(names)}")
        self.model, self.layer, self.module = model, layer, modules[layer]

    def attribute(self, x: torch.Tensor, target: int | None = None, relu: bool = True,
                  upsample: bool = True) -> torch.Tensor:
        caught: dict[str, torch.Tensor] = {}
        keep = self.module.register_forward_hook(lambda m, args, out: caught.__setitem__("A", out.detach()))
        keep_grad = self.module.register_full_backward_hook(
            lambda m, grad_in, grad_out: caught.__setitem__("dA", grad_out[0].detach()))
        try:
            with _EvalMode(self.model):
                xg = x.detach().requires_grad_(True)
                y = self.model(xg)  # (N, O)
                k = resolve_target(y.shape[1], target)
                torch.autograd.grad(y[:, k].sum(), xg)
        finally:
            keep.remove()
            keep_grad.remove()
        a, da = caught["A"], caught["dA"]
        if a.dim() != 4:
            raise ValueError(f"Grad-CAM needs a convolutional layer with output (N, C, h, w); "
                             f"{self.layer!r} gives shape {tuple(a.shape)}")
        weights = da.mean(dim=(2, 3), keepdim=True)  # (N, C, h, w) -> (N, C, 1, 1)
        cam = (weights * a).sum(dim=1, keepdim=True)  # (N, C, h, w) -> (N, 1, h, w)
        if relu:
            cam = cam.clamp_min(0)
        if upsample:
            cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
        return cam


def default_layer(model: nn.Module) -> str:
    """The last entry of ``model.features`` that is or holds a convolution. Twin:
    ``numpy_nn.explain.default_layer``."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        raise ValueError(f"Grad-CAM needs a convolutional model; {type(model).__name__} has no convolutional layer")
    last = None
    for name, child in features.named_children():
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            last = f"features.{name}"
    if last is None:
        raise ValueError(f"Grad-CAM needs a convolutional model; {type(model).__name__}.features holds no convolution")
    return last


class _EvalMode:
    """Eval mode for the duration, each module's mode restored on exit."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
