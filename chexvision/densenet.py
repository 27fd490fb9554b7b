"""DenseNet-121 in the application: grayscale input, ImageNet normalisation, pretrained weights.

Twin: ``chexvision/densenet_torch.py`` (the same model for the torch track; this module never
imports torch, except to read a ``.pth`` or download ImageNet weights when asked to).

Input: X-rays are grayscale, DenseNet-121 (and its ImageNet weights) expects RGB normalised with
ImageNet's per-channel mean and std. ``GrayDenseNet`` takes the (N, 1, H, W) batch the shared
``BatchLoader`` serves, with pixels scaled to [0, 1] by the fixed ``pixel_standardizer`` (x / 255:
no statistics are fitted), and feeds the network

    x_rgb[:, c] = (x − mean_c) / std_c,   mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225)

i.e. the gray image repeated in the three channels, normalised exactly as torchvision normalises
an RGB photo. Why this, and always (pretrained or not): the ImageNet filters of conv0 were learned
on inputs of that scale and layout; repeating the image (rather than summing conv0's filters into
one channel) keeps the checkpoint torchvision's, key for key and shape for shape; and one fixed
rule per model kind means a DenseNet trained from scratch, one fine-tuned from ImageNet and one
converted from a ``.pth`` all read an image the same way, with the rule stored in the checkpoint
(``standardizer.npz`` holds mean 0, std 255). The repeat and normalisation add no parameters, so
the ``state_dict`` is exactly ``numpy_nn.models.DenseNet``'s.

Pretrained weights (``--pretrained``): ``imagenet`` (torchvision's densenet121 via torch.hub, needs
torch and internet), a ``.pth`` (``torch.load(weights_only=True)``, needs torch) or an ``.npz``
(ours; ``python -m chexvision convert`` makes one from a ``.pth``). Every backbone key must be
present with its shape; the classifier is replaced by a fresh one with the task's outputs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from numpy_nn.densenet import DenseNet, min_input_size, remap_legacy_keys

from .errors import UserError

KIND = "densenet121"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER = ("classifier.weight", "classifier.bias")


def densenet_spec(image_size: int, out_features: int = 1, drop_rate: float = 0.0) -> dict:
    """The checkpoint's model description for ``--model densenet121``."""
    smallest = min_input_size(4)
    if int(image_size) < smallest:
        raise UserError(f"--model densenet121 needs images of at least {smallest}×{smallest} (five halvings); "
                        f"the data is {image_size}×{image_size}: preprocess with a larger --image-size (224 is usual)")
    return {"kind": KIND, "in_channels": 1, "out_features": int(out_features), "drop_rate": float(drop_rate),
            "image_size": int(image_size)}


def pixel_standardizer(image_size: int):
    """The fixed x ↦ x / 255 the DenseNet reads its [0, 1] gray levels from (mean 0, std 255)."""
    from .data import Standardizer

    shape = (int(image_size), int(image_size))
    return Standardizer(np.zeros(shape, np.float32), np.full(shape, 255.0, np.float32))


class GrayDenseNet(DenseNet):
    """``numpy_nn.models.densenet121`` fed a gray (N, 1, H, W) batch in [0, 1]: repeated to RGB and
    ImageNet-normalised inside (see the module docstring). Same ``state_dict`` as DenseNet.

    Shape: (N, 1, H, W) -> (N, out_features). Twin: ``chexvision.densenet_torch.GrayDenseNet``.
    """

    def __init__(self, out_features: int = 1, drop_rate: float = 0.0, dtype=np.float32):
        super().__init__(32, (6, 12, 24, 16), 64, bn_size=4, drop_rate=drop_rate, num_classes=out_features,
                         in_channels=3, dtype=dtype)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"GrayDenseNet expects input (N, 1, H, W), got shape {x.shape}")
        mean = np.asarray(IMAGENET_MEAN, x.dtype).reshape(1, 3, 1, 1)
        inv_std = (1 / np.asarray(IMAGENET_STD, np.float64)).astype(x.dtype).reshape(1, 3, 1, 1)
        self._inv_std = inv_std
        return super().forward((x - mean) * inv_std)  # (N, 1, H, W) -> (N, 3, H, W) by broadcasting

    def backward(self, grad_output):
        # x_rgb[:, c] = (x − m_c) / s_c for c = 0, 1, 2  =>  dx = Σ_c dx_rgb[:, c] / s_c
        g = super().backward(grad_output)
        return None if g is None else (g * self._inv_std).sum(axis=1, keepdims=True)


def make_numpy_model(spec: dict, dtype) -> GrayDenseNet:
    return GrayDenseNet(spec["out_features"], spec.get("drop_rate", 0.0), dtype=dtype)


# -- pretrained weights ------------------------------------------------------------------------------
def read_weights(source: str) -> dict[str, np.ndarray]:
    """``{name: array}`` from ``imagenet``, a ``.pth`` or an ``.npz``; legacy key names renamed."""
    if source == "imagenet":
        torch_io = _torch_io(source)
        return torch_io.imagenet_state()
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--pretrained {source}: no such file (give imagenet, a .pth or an .npz)")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return remap_legacy_keys({k: z[k] for k in z.files})
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"--pretrained {source}: unreadable .npz ({e})") from None
    if path.suffix.lower() in (".pth", ".pt"):
        return _torch_io(source).read_pth(path)
    raise UserError(f"--pretrained {source}: give imagenet, a .pth/.pt file or an .npz file")


def _torch_io(source: str):
    try:
        from . import densenet_torch
    except ModuleNotFoundError as e:
        if e.name == "torch":
            raise UserError(f"--pretrained {source} needs PyTorch to read; without it, run `python -m chexvision "
                            "convert --pth FILE.pth --out FILE.npz` where torch is installed and pass the .npz") from None
        raise
    return densenet_torch


def with_backbone(own_state: dict, weights: dict, source: str) -> dict:
    """``own_state`` (the fresh model's) with every non-classifier entry taken from ``weights``.

    The classifier stays the fresh one (the task's outputs replace ImageNet's 1000); every other key
    must be in ``weights`` with the same shape. ``num_batches_tracked`` missing from an old
    checkpoint reads as 0 (torch's rule).
    """
    weights = remap_legacy_keys(weights)
    missing, wrong = [], []
    merged = dict(own_state)
    for key, value in own_state.items():
        if key in CLASSIFIER:
            continue
        if key not in weights:
            if key.endswith("num_batches_tracked"):
                merged[key] = np.zeros_like(value)
                continue
            missing.append(key)
        elif tuple(np.shape(weights[key])) != value.shape:
            wrong.append(f"{key} {tuple(np.shape(weights[key]))} vs {value.shape}")
        else:
            merged[key] = np.asarray(weights[key])
    unexpected = [k for k in weights if k not in own_state]
    if missing or wrong or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape (first {wrong[0]})")
        raise UserError(f"--pretrained {source}: not a densenet121 state_dict: " + ", ".join(parts))
    return merged
