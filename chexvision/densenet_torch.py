"""DenseNet-121 in the torch track: the twin of ``chexvision/densenet.py`` (see its docstring for
the gray-to-RGB input rule), plus the readers that need torch: torchvision's ImageNet weights via
torch.hub and ``.pth`` files, both with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from numpy_nn.densenet import remap_legacy_keys
from torch_ref.densenet import IMAGENET_URL, DenseNet, load_imagenet_state

from .densenet import IMAGENET_MEAN, IMAGENET_STD
from .errors import UserError


class GrayDenseNet(DenseNet):
    """torch_ref's densenet121 fed a gray (N, 1, H, W) batch in [0, 1], repeated to RGB and
    ImageNet-normalised inside. Twin: ``chexvision.densenet.GrayDenseNet``. Same state_dict as DenseNet."""

    def __init__(self, out_features: int = 1, drop_rate: float = 0.0, dtype: torch.dtype = torch.float32):
        super().__init__(32, (6, 12, 24, 16), 64, bn_size=4, drop_rate=drop_rate, num_classes=out_features,
                         in_channels=3, dtype=dtype)
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN, dtype=dtype).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("_inv_std", (1 / torch.tensor(IMAGENET_STD, dtype=torch.float64)).to(dtype).reshape(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"GrayDenseNet expects input (N, 1, H, W), got shape {tuple(x.shape)}")
        return super().forward((x - self._mean.to(x.dtype)) * self._inv_std.to(x.dtype))


def make_torch_model(spec: dict, dtype: torch.dtype) -> GrayDenseNet:
    return GrayDenseNet(spec["out_features"], spec.get("drop_rate", 0.0), dtype=dtype)


def imagenet_state() -> dict[str, np.ndarray]:
    """torchvision's ImageNet densenet121 as ``{name: array}`` (downloaded once into torch.hub's cache)."""
    try:
        state = load_imagenet_state()
    except Exception as e:  # noqa: BLE001 - offline, proxy, disk: one line, not a traceback
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"--pretrained imagenet: cannot fetch {IMAGENET_URL} ({reason}); download it where there is "
                        "internet and pass --pretrained FILE.pth") from None
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def read_pth(path: str | Path) -> dict[str, np.ndarray]:
    """A ``.pth`` state_dict (or ``{"state_dict": ...}`` / ``{"model": ...}`` around one) read with
    ``torch.load(weights_only=True)``: tensors only, no code runs; legacy key names renamed."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, not a torch file, pickled code refused
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a loadable weights-only .pth ({reason[:200]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: holds no state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}  # saved from nn.DataParallel
    return remap_legacy_keys({k: v.detach().cpu().numpy() for k, v in state.items()})
