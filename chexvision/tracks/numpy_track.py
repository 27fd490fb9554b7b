"""The NumPy engine: numpy_nn models, losses, optimizers and schedulers. Never imports torch.

Twin: ``chexvision/tracks/torch_track.py`` (same class, same methods, same order). See
``chexvision/tracks/__init__.py`` for the contract both follow.
"""

from __future__ import annotations

import numpy as np

import numpy_nn
from numpy_nn import models
from numpy_nn.layers import Dropout
from numpy_nn.losses import BCEWithLogitsLoss
from numpy_nn.optim import SGD, Adam, AdamW, RMSprop
from numpy_nn.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from numpy_nn.training import train_step, weight_decay_groups

from ..checkpoint import check_state_fits, flatten_state, unflatten_state
from ..errors import UserError
from ..tasks import loss_targets
from . import STREAM_DROPOUT, describe, reseed_generator

NAME = "numpy"


def resolve_device(device: str) -> str:
    """The NumPy track computes on the CPU only."""
    if device != "cpu":
        raise UserError(f"--device {device} applies to the torch track only; the NumPy track runs on the CPU")
    return "cpu"


def make_model(spec: dict, dtype) -> numpy_nn.Module:
    """numpy_nn model from a spec (weights drawn from numpy_nn's default generator)."""
    if spec["kind"] == "mlp":
        return models.MLP(spec["in_features"], tuple(spec["hidden"]), spec["out_features"], spec["dropout"], dtype=dtype)
    if spec["kind"] == "cnn":
        if not hasattr(models, "CNN"):
            raise UserError("--model cnn needs numpy_nn.models.CNN, which this version lacks; use --model mlp")
        return models.CNN(in_channels=spec["in_channels"], out_features=spec["out_features"],
                          channels=tuple(spec["channels"]), dropout=spec["dropout"], dtype=dtype)
    if spec["kind"] == "densenet121":
        from ..densenet import make_numpy_model

        return make_numpy_model(spec, dtype)
    raise UserError(f"unknown model kind {spec['kind']!r} in the checkpoint config")


def make_optimizer(params, cfg):
    """Adam / AdamW / SGD with momentum / RMSprop over torch-style param groups."""
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return AdamW(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return RMSprop(params, lr=cfg.lr)
    raise UserError(f"unknown optimizer {cfg.optimizer!r}")


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    """LinearLR warm-up, then CosineAnnealingLR, chained by SequentialLR (None for a constant lr).

    Counted in epochs (``scheduler_interval="epoch"``: stepped after each epoch) or in
    mini-batches (``"step"``: stepped after each one, so warm-up and decay are smooth).
    """
    if cfg.scheduler == "none":
        return None
    per = steps_per_epoch if cfg.scheduler_interval == "step" else 1
    warm = min(cfg.warmup_epochs, cfg.epochs - 1) * per
    total = cfg.epochs * per
    if warm == 0:
        return CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.min_lr)
    warmup = LinearLR(optimizer, start_factor=cfg.warmup_start_factor, end_factor=1.0, total_iters=warm)
    cosine = CosineAnnealingLR(optimizer, T_max=total - warm, eta_min=cfg.min_lr)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warm])


class Engine:
    """numpy_nn model + BCE-with-logits + optimizer + scheduler. Twin: ``torch_track.Engine``.

    Args:
        spec: model description (``chexvision.tracks.model_spec``).
        dtype: ``"float32"`` or ``"float64"``; parameters and batches use it.
        device: must be ``"cpu"``.
        lockstep: must be False (the NumPy track is what the torch track locks onto).
    """

    def __init__(self, spec: dict, dtype: str = "float32", device: str = "cpu", lockstep: bool = False):
        if lockstep:
            raise UserError("--lockstep applies to the torch track only")
        self.spec = dict(spec)
        self.dtype = np.dtype(dtype)
        self.device = resolve_device(device)
        self.lockstep = False
        self.model = None
        self.criterion = self.optimizer = self.scheduler = None
        self.reg_params: list = []
        self.l1 = self.l2 = 0.0
        # One generator feeds every Dropout; reseeded from (seed, epoch) at each epoch start.
        self.dropout_rng = np.random.Generator(np.random.PCG64(0))

    # -- model ------------------------------------------------------------------------------------
    def build_model(self, seed: int) -> None:
        numpy_nn.manual_seed(seed)  # He-normal init draws from the default generator
        self.model = make_model(self.spec, self.dtype)
        # The input is data, so no dL/dx is needed at the first layer: skipping it saves a third of
        # that layer's backward, as torch's autograd skips it for an input without requires_grad.
        first = self.model.layers[0] if self.spec["kind"] == "mlp" else self.model.features[0]
        first.needs_input_grad = False
        for m in self.model.modules():
            if isinstance(m, Dropout):
                m.generator = self.dropout_rng

    def load_pretrained(self, source: str) -> None:
        """Backbone weights from ``source`` (``imagenet``, a .pth or an .npz), a fresh classifier."""
        from ..densenet import read_weights, with_backbone

        self.model.load_state_dict(with_backbone(self.model_state(), read_weights(source), source), strict=True)

    def model_state(self) -> dict[str, np.ndarray]:
        return dict(self.model.state_dict())

    def load_model_state(self, state: dict, source: str = "checkpoint") -> None:
        if self.model is None:
            self.build_model(0)
        expected = {k: v.shape for k, v in self.model.state_dict().items()}
        check_state_fits(expected, state, source, describe(self.spec))
        self.model.load_state_dict(state, strict=True)

    # -- training ---------------------------------------------------------------------------------
    def setup_training(self, cfg, steps_per_epoch: int, pos_weight: float | None = None) -> None:
        self.criterion = BCEWithLogitsLoss(pos_weight=pos_weight, label_smoothing=cfg.label_smoothing)
        groups = weight_decay_groups(self.model, cfg.weight_decay)
        self.optimizer = make_optimizer(groups, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, steps_per_epoch)
        self.reg_params = list(groups[0]["params"])  # the weights (the group with decay)
        self.l1, self.l2 = cfg.l1, cfg.l2

    def begin_epoch(self, seed: int, epoch: int) -> None:
        self.model.train()
        reseed_generator(self.dropout_rng, seed, STREAM_DROPOUT, epoch)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        # (N,) -> (N, 1); -1 (masked) entries get target 0 and loss weight 0 (None: nothing masked)
        target, self.criterion.weight = loss_targets(y.reshape(len(y), -1), self.dtype)
        data_loss, reg_loss = train_step(self.model, self.criterion, self.optimizer, x.astype(self.dtype, copy=False),
                                         target, l1=self.l1, l2=self.l2, reg_params=self.reg_params)
        return float(data_loss), float(reg_loss)

    def scheduler_step(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- scoring ----------------------------------------------------------------------------------
    def logits(self, batches) -> np.ndarray:
        """Eval mode (dropout off), forward every ``(x, y)`` batch: (N,) float64 logits, (N, K) for K outputs."""
        self.model.eval()
        k = int(self.spec["out_features"])
        out = [self.model(x.astype(self.dtype, copy=False)).reshape(len(x), k) for x, _ in batches]  # (B, K)
        y = np.concatenate(out).astype(np.float64) if out else np.zeros((0, k))
        return y.reshape(-1) if k == 1 else y  # one output: (N,) as the binary metrics take it

    # -- resume state -----------------------------------------------------------------------------
    def training_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        tree = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "dropout_rng": self.dropout_rng.bit_generator.state,
        }
        return flatten_state(tree, "engine")

    def load_training_state(self, tree: dict, arrays: dict) -> None:
        state = unflatten_state(tree, arrays)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.dropout_rng.bit_generator.state = state["dropout_rng"]
