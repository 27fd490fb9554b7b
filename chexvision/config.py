"""The training configuration: one dataclass, one comment per default.

The defaults are the CheXVision-mini recipe (a 4096-1024-256-64-1 MLP on 64×64 images, Adam,
dropout 0.3, label smoothing 0.05, cosine decay after a one-epoch warm-up), sized so that
``python -m chexvision train --dataset synthetic`` learns its task in well under a minute on two
CPU cores. ``train`` builds its command-line options from these defaults, and the whole config is
saved as JSON in every checkpoint (``config.json``, key ``"train"``) next to the data config
(key ``"data"``), so ``evaluate``, ``predict`` and ``--resume`` rebuild exactly the same run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import UserError
from .validate import MAX_BATCH, MAX_EPOCHS, MAX_LAYERS, MAX_WIDTH, check_seed, is_int, is_number

TRACKS = ("numpy", "torch")
MODELS = ("mlp", "cnn", "densenet121")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("cosine", "none")
SCHEDULER_INTERVALS = ("epoch", "step")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything that decides a training run, apart from the data (see ``chexvision.data``)."""

    # -- engine -----------------------------------------------------------------------------------
    track: str = "numpy"  # "numpy": the hand-written numpy_nn; "torch": the torch_ref twin
    device: str = "cpu"  # torch track only: "cpu" or "cuda" (an error if CUDA is not available)
    dtype: str = "float32"  # parameter and batch dtype; float64 for parity checks
    lockstep: bool = False  # torch track: NumPy-drawn init and dropout masks, so it retraces the NumPy run
    amp: bool = False  # torch track on CUDA: mixed precision (autocast + GradScaler); outside lockstep parity

    # -- model ------------------------------------------------------------------------------------
    model: str = "mlp"  # "mlp" (CheXVision-mini) or "cnn" (numpy_nn.models.CNN, NCHW input)
    hidden: tuple[int, ...] = (1024, 256, 64)  # MLP hidden widths (CheXVision-mini)
    channels: tuple[int, ...] = (16, 32, 64)  # CNN stage widths: stem, middle stages, residual stage
    dropout: float = 0.3  # p of every Dropout layer; 0 removes them (densenet121: 0 unless given, torchvision's)
    pretrained: str | None = None  # densenet121: initial weights, "imagenet", a .pth or an .npz (classifier replaced)

    # -- optimisation -----------------------------------------------------------------------------
    epochs: int = 8  # passes over the training split
    batch_size: int = 64  # examples per mini-batch (the last, smaller batch is kept)
    optimizer: str = "adam"  # "adam", "adamw" (decoupled decay), "sgd" (with momentum) or "rmsprop"
    lr: float = 1e-3  # peak learning rate (reached after the warm-up)
    momentum: float = 0.9  # SGD's momentum (Adam/AdamW use torch's betas=(0.9, 0.999), RMSprop alpha=0.99)
    weight_decay: float = 1e-4  # the optimizer's weight decay, on weights only (never biases or norms)
    l1: float = 0.0  # explicit L1 penalty λ₁·Σ|w| on weights, reported as the regularisation loss
    l2: float = 0.0  # explicit L2 penalty λ₂·Σw² on weights, reported as the regularisation loss
    label_smoothing: float = 0.05  # BCE targets y' = y(1−ε) + ε/2
    pos_weight: float | str | None = None  # weight of abnormal examples in the loss; None = 1; "auto" = n_neg/n_pos

    # -- learning-rate schedule -------------------------------------------------------------------
    scheduler: str = "cosine"  # "cosine": LinearLR warm-up then CosineAnnealingLR; "none": constant lr
    warmup_epochs: int = 1  # linear warm-up length in epochs, capped at epochs − 1 (0: cosine from the start)
    warmup_start_factor: float = 0.1  # the warm-up starts at lr × this factor
    min_lr: float = 0.0  # cosine floor (eta_min)
    scheduler_interval: str = "epoch"  # step the schedule once per "epoch" or once per "step" (mini-batch)

    # -- augmentation (training split only) -------------------------------------------------------
    augment: bool = True  # apply the augmentations below to training batches
    flip: bool = False  # horizontal flips (off: the heart sits on the left in a PA film)
    noise_std: float = 0.02  # Gaussian pixel noise, std as a fraction of the 0–255 range (≈ 5 gray levels)
    brightness: float = 0.1  # shift drawn from U(−b, b) of the 0–255 range, per image
    contrast: float = 0.1  # contrast about the image mean scaled by U(1−c, 1+c), per image

    # -- run control ------------------------------------------------------------------------------
    seed: int = 0  # seeds init, batch order, augmentation and dropout (each a function of seed and epoch)
    patience: int = 0  # stop after this many epochs without a better validation AUC (0: never)
    select_window: int = 3  # best/ = the epoch whose validation AUC averaged over the last N epochs is highest
    threshold: str = "youden"  # how the stored decision threshold is chosen on validation

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.channels = tuple(int(c) for c in self.channels)
        self.validate()

    def validate(self) -> None:
        """Raise ``UserError`` naming the first option that is out of range."""
        choices = {
            "track": TRACKS, "model": MODELS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
            "scheduler_interval": SCHEDULER_INTERVALS, "dtype": DTYPES, "device": DEVICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"--{_flag(f.name)} must be a finite number, got {v}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise UserError(f"--epochs must be from 1 to {MAX_EPOCHS:,}, got {self.epochs}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UserError(f"--batch-size must be from 1 to {MAX_BATCH:,}, got {self.batch_size}")
        check_seed(self.seed)
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("weight_decay", "l1", "l2", "momentum", "min_lr"):
            if getattr(self, name) < 0:
                raise UserError(f"--{_flag(name)} must be non-negative, got {getattr(self, name)}")
        for name in ("noise_std", "brightness", "contrast"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{_flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.warmup_start_factor <= 1.0:
            raise UserError(f"--warmup-start-factor must be in (0, 1], got {self.warmup_start_factor}")
        if self.warmup_epochs < 0:
            raise UserError(f"--warmup-epochs must be non-negative, got {self.warmup_epochs}")
        if self.patience < 0:
            raise UserError(f"--patience must be non-negative, got {self.patience}")
        if self.select_window < 1:
            raise UserError(f"--select-window must be at least 1, got {self.select_window}")
        if not self.hidden and self.model == "mlp":
            raise UserError("--hidden needs at least one width, e.g. --hidden 256,64")
        for name in ("hidden", "channels"):
            widths = getattr(self, name)
            if len(widths) > MAX_LAYERS or any(not 1 <= w <= MAX_WIDTH for w in widths):
                raise UserError(f"--{name} takes at most {MAX_LAYERS} widths, each from 1 to {MAX_WIDTH:,}, got "
                                f"{','.join(map(str, widths))}")
        if self.model == "cnn" and len(self.channels) < 2:
            raise UserError(f"--channels needs at least two positive widths, got {','.join(map(str, self.channels))}")
        pw = self.pos_weight
        if pw not in (None, "auto") and not (is_number(pw) and math.isfinite(pw) and pw > 0):
            raise UserError(f"--pos-weight must be a positive number or 'auto', got {pw!r}")
        if self.track == "numpy" and self.device != "cpu":
            raise UserError("--device applies to the torch track only; the NumPy track runs on the CPU")
        if self.lockstep and self.track != "torch":
            raise UserError("--lockstep applies to the torch track only")
        if self.amp and (self.track != "torch" or self.device != "cuda"):
            raise UserError("--amp (mixed precision) needs --track torch --device cuda; on the CPU train without it")
        if self.amp and self.dtype != "float32":
            raise UserError("--amp runs float16 on float32 weights; drop --dtype float64")
        if self.pretrained is not None and self.model != "densenet121":
            raise UserError("--pretrained applies to --model densenet121 only")
        parse_threshold(self.threshold)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from ``to_dict()`` output; unknown keys are an error, missing keys take defaults.

        Each value must have its field's JSON type (a hand-edited ``"hidden": "32"`` or
        ``[32.7]`` is refused, never converted), then ``validate`` checks the ranges.
        """
        if not isinstance(d, dict):
            raise UserError(f"the training configuration must be an object, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise UserError(f"unknown training option(s) in config: {', '.join(unknown)}")
        for name, v in d.items():
            default = getattr(DEFAULTS, name)
            ok = (isinstance(v, bool) if isinstance(default, bool) else
                  is_int(v) if isinstance(default, int) else
                  is_number(v) if isinstance(default, float) else
                  isinstance(v, str) if isinstance(default, str) else
                  isinstance(v, list) and all(is_int(x) for x in v) if isinstance(default, tuple) else
                  v is None or isinstance(v, (str, int, float)))
            if not ok:
                want = ("true/false" if isinstance(default, bool) else "an integer" if isinstance(default, int) else
                        "a number" if isinstance(default, float) else "a string" if isinstance(default, str) else
                        "a list of integers" if isinstance(default, tuple) else "a number, a string or null")
                raise UserError(f"training option {name!r} must be {want}, got {v!r}")
        return cls(**d)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_hidden(text: str, flag: str = "--hidden") -> tuple[int, ...]:
    """``"1024,256,64"`` -> ``(1024, 256, 64)``; ``""`` -> ``()``."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers such as 256,64, got {text!r}") from None


def parse_threshold(text: str) -> tuple[str, float | None]:
    """``"youden"`` / ``"fixed:0.5"`` / ``"sensitivity:0.9"`` -> ``(method, value)`` for
    ``chexvision.thresholds.choose_threshold``."""
    method, _, value = str(text).partition(":")
    if method == "youden" and not value:
        return "youden", None
    if method in ("fixed", "sensitivity") and value:
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if (method == "fixed" and 0 <= v <= 1) or (method == "sensitivity" and 0 < v <= 1):
            return method, v
    raise UserError(f"--threshold takes youden, fixed:P (0 <= P <= 1) or sensitivity:S (0 < S <= 1), got {text!r}")


DEFAULTS = TrainConfig()
