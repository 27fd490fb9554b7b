"""The torch engine: torch_ref models, losses, torch.optim and torch.optim.lr_scheduler.

Twin: ``chexvision/tracks/numpy_track.py`` (same class, same methods, same order). Batches arrive
as NumPy arrays from the shared ``BatchLoader`` and go to ``device``; scores come back as NumPy.

``lockstep=True`` makes this engine retrace the NumPy track: the initial weights are the
numpy_nn model's (built from the same seed and copied with ``torch_ref.exchange``) and dropout
masks are drawn by NumPy from the same (seed, epoch) generator (``torch_ref.layers.use_numpy_masks``).
Otherwise init and dropout use torch's RNG, reseeded from (seed, epoch) at each epoch start.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_ref import models
from torch_ref.exchange import numpy_to_torch, to_numpy_state, to_torch_state
from torch_ref.layers import use_numpy_masks
from torch_ref.losses import BCEWithLogitsLoss
from torch_ref.regularization import penalty
from torch_ref.training import train_step, weight_decay_groups

from ..checkpoint import check_state_fits, flatten_state, unflatten_state
from ..errors import UserError
from ..tasks import loss_targets
from . import STREAM_DROPOUT, STREAM_TORCH, describe, epoch_seed_sequence, reseed_generator

NAME = "torch"
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` or ``"cuda"``; asking for CUDA without it is a ``UserError``, not a crash later."""
    if device == "cuda":
        if not torch.cuda.is_available():
            build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no GPU visible"
            raise UserError(f"--device cuda: CUDA is not available (torch {torch.__version__}, {build}); use --device cpu")
        return torch.device("cuda")
    if device != "cpu":
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    return torch.device("cpu")


def make_model(spec: dict, dtype) -> torch.nn.Module:
    """torch_ref model from a spec (weights drawn from torch's default generator)."""
    if spec["kind"] == "mlp":
        return models.MLP(spec["in_features"], tuple(spec["hidden"]), spec["out_features"], spec["dropout"], dtype=dtype)
    if spec["kind"] == "cnn":
        if not hasattr(models, "CNN"):
            raise UserError("--model cnn needs torch_ref.models.CNN, which this version lacks; use --model mlp")
        return models.CNN(in_channels=spec["in_channels"], out_features=spec["out_features"],
                          channels=tuple(spec["channels"]), dropout=spec["dropout"], dtype=dtype)
    if spec["kind"] == "densenet121":
        from ..densenet_torch import make_torch_model

        return make_torch_model(spec, dtype)
    raise UserError(f"unknown model kind {spec['kind']!r} in the checkpoint config")


def make_optimizer(params, cfg):
    """Adam / AdamW / SGD with momentum / RMSprop over param groups (as numpy_track)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    raise UserError(f"unknown optimizer {cfg.optimizer!r}")


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    """LinearLR warm-up, then CosineAnnealingLR, chained by SequentialLR (as numpy_track)."""
    sched = torch.optim.lr_scheduler
    if cfg.scheduler == "none":
        return None
    per = steps_per_epoch if cfg.scheduler_interval == "step" else 1
    warm = min(cfg.warmup_epochs, cfg.epochs - 1) * per
    total = cfg.epochs * per
    if warm == 0:
        return sched.CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.min_lr)
    warmup = sched.LinearLR(optimizer, start_factor=cfg.warmup_start_factor, end_factor=1.0, total_iters=warm)
    cosine = sched.CosineAnnealingLR(optimizer, T_max=total - warm, eta_min=cfg.min_lr)
    return sched.SequentialLR(optimizer, [warmup, cosine], milestones=[warm])


def _tensor_to_array(obj):
    return obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else None


class Engine:
    """torch_ref model + BCE-with-logits + optimizer + scheduler. Twin: ``numpy_track.Engine``.

    Args:
        spec: model description (``chexvision.tracks.model_spec``).
        dtype: ``"float32"`` or ``"float64"``.
        device: ``"cpu"`` or ``"cuda"``.
        lockstep: NumPy-drawn init and dropout masks (see the module docstring).
    """

    def __init__(self, spec: dict, dtype: str = "float32", device: str = "cpu", lockstep: bool = False):
        self.spec = dict(spec)
        self.dtype = np.dtype(dtype)
        self.torch_dtype = TORCH_DTYPE[self.dtype.name]
        self.device = resolve_device(device)
        self.lockstep = lockstep
        self.model = None
        self.criterion = self.optimizer = self.scheduler = None
        self.reg_params: list = []
        self.l1 = self.l2 = 0.0
        self.amp, self.scaler = False, None  # mixed precision, set by setup_training (CUDA only)
        self.dropout_rng = np.random.Generator(np.random.PCG64(0))  # used in lockstep only

    # -- model ------------------------------------------------------------------------------------
    def build_model(self, seed: int) -> None:
        if self.lockstep:
            from . import numpy_track  # the very weights the NumPy track starts from

            twin = numpy_track.Engine(self.spec, dtype=self.dtype.name)
            twin.build_model(seed)
            model = numpy_to_torch(twin.model, make_model(self.spec, self.torch_dtype))
            use_numpy_masks(model, self.dropout_rng)
        else:
            torch.manual_seed(seed)
            model = make_model(self.spec, self.torch_dtype)
        self.model = model.to(self.device)

    def load_pretrained(self, source: str) -> None:
        """Backbone weights from ``source`` (``imagenet``, a .pth or an .npz), a fresh classifier."""
        from ..densenet import read_weights, with_backbone

        self.load_model_state(with_backbone(self.model_state(), read_weights(source), source), f"--pretrained {source}")

    def model_state(self) -> dict[str, np.ndarray]:
        return dict(to_numpy_state(self.model.state_dict()))

    def load_model_state(self, state: dict, source: str = "checkpoint") -> None:
        if self.model is None:
            self.build_model(0)
        own = self.model.state_dict()
        check_state_fits({k: tuple(v.shape) for k, v in own.items()}, state, source, describe(self.spec))
        tensors = {k: v.to(own[k].dtype) for k, v in to_torch_state(state).items()}  # keep each tensor's dtype
        self.model.load_state_dict(tensors, strict=True)

    # -- training ---------------------------------------------------------------------------------
    def setup_training(self, cfg, steps_per_epoch: int, pos_weight: float | None = None) -> None:
        self.criterion = BCEWithLogitsLoss(pos_weight=pos_weight, label_smoothing=cfg.label_smoothing).to(self.device)
        groups = weight_decay_groups(self.model, cfg.weight_decay)
        self.optimizer = make_optimizer(groups, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, steps_per_epoch)
        self.reg_params = list(groups[0]["params"])  # the weights (the group with decay)
        self.l1, self.l2 = cfg.l1, cfg.l2
        self.amp = bool(getattr(cfg, "amp", False))
        if self.amp:
            if self.device.type != "cuda" or self.lockstep:
                raise UserError("--amp needs --device cuda and no --lockstep")
            self.scaler = torch.amp.GradScaler("cuda")

    def begin_epoch(self, seed: int, epoch: int) -> None:
        self.model.train()
        reseed_generator(self.dropout_rng, seed, STREAM_DROPOUT, epoch)
        if not self.lockstep:  # torch's own dropout: reseed torch's RNG (CPU and every GPU)
            torch.manual_seed(int(epoch_seed_sequence(seed, STREAM_TORCH, epoch).generate_state(1)[0]))

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        xt = self._to_tensor(x)
        # (N,) -> (N, 1); -1 (masked) entries get target 0 and loss weight 0 (None: nothing masked)
        target, weight = loss_targets(y.reshape(len(y), -1), self.dtype)
        target = self._to_tensor(target)
        self.criterion.weight = None if weight is None else self._to_tensor(weight)
        if self.amp:
            return self._amp_step(xt, target)
        data_loss, reg_loss = train_step(self.model, self.criterion, self.optimizer, xt, target,
                                         l1=self.l1, l2=self.l2, reg_params=self.reg_params)
        return float(data_loss), float(reg_loss)

    def _amp_step(self, xt: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
        """``train_step`` under float16 autocast: convolutions and matrix products in half precision,
        the loss in float32, the gradient scaled against float16 underflow and unscaled before Adam
        (a step with inf/NaN gradients is skipped by the scaler). Not bit-comparable with the NumPy track."""
        self.optimizer.zero_grad()
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            logits = self.model(xt)
        data_loss = self.criterion(logits.float(), target.reshape(logits.shape))  # (N, K), as train_step
        reg_loss = penalty(self.reg_params, self.l1, self.l2)
        self.scaler.scale(data_loss + reg_loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(data_loss.item()), float(reg_loss.item())

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
        out = []
        with torch.no_grad():
            for x, _ in batches:
                out.append(self.model(self._to_tensor(x)).reshape(len(x), k).cpu().numpy())  # (B, K)
        y = np.concatenate(out).astype(np.float64) if out else np.zeros((0, k))
        return y.reshape(-1) if k == 1 else y  # one output: (N,) as the binary metrics take it

    def _to_tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=self.dtype)).to(self.device)

    # -- resume state -----------------------------------------------------------------------------
    def training_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        tree = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "dropout_rng": self.dropout_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),  # uint8 tensor -> uint8 array
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "amp_scaler": self.scaler.state_dict() if self.amp else None,
        }
        return flatten_state(tree, "engine", to_array=_tensor_to_array)

    def load_training_state(self, tree: dict, arrays: dict) -> None:
        state = unflatten_state(tree, arrays, from_array=torch.from_numpy)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.dropout_rng.bit_generator.state = state["dropout_rng"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.amp and state.get("amp_scaler"):
            self.scaler.load_state_dict(state["amp_scaler"])
