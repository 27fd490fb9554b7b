"""One validation layer: limits, and the checks every file we read passes before it is used.

Everything a user can hand us (command-line options, a checkpoint's ``config.json``, ``meta.json``,
resume state, ``.npz`` arrays) goes through here, so a bad value is one ``UserError`` line naming
the file (or option) and what is wrong, raised *before* any expensive work or large allocation.

Limits (stated in ``train --help``) fit a 2-core, 24 GB machine as well as a 16 GB Kaggle GPU:

=====================  ===========  =================================================================
``MAX_PARAMS``         100 million  parameters of one model (float64 + Adam: about 3.2 GB)
``MAX_WIDTH``          65,536       one hidden width or CNN stage width
``MAX_LAYERS``         64           hidden layers (MLP) or stages (CNN)
``MAX_ACTIVATIONS``    2^30         activation values of one training batch (4 GB in float32)
``MAX_EPOCHS``         10,000       epochs of a run (also a tampered resume state)
``MAX_BATCH``          65,536       mini-batch size
``MAX_SYNTHETIC``      200,000      synthetic images, and at most 2 GiB of their pixels
``MAX_N_BOOT``         100,000      bootstrap resamples of ``evaluate``
``MAX_SEED``           2^32 − 1     seeds are 0 .. MAX_SEED
=====================  ===========  =================================================================
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UserError

MAX_PARAMS = 100_000_000
MAX_WIDTH = 65_536
MAX_LAYERS = 64
MAX_ACTIVATIONS = 2**30
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
MAX_SYNTHETIC = 200_000
MAX_SYNTHETIC_BYTES = 2**31
MAX_N_BOOT = 100_000
MAX_SEED = 2**32 - 1
MAX_OUTPUTS = 1_000  # output units of a model (1 for binary screening, 14 for the findings task)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # native byte order only

LIMITS_HELP = (f"limits: at most {MAX_PARAMS:,} parameters, widths 1..{MAX_WIDTH:,}, {MAX_LAYERS} layers, "
               f"{MAX_ACTIVATIONS:,} activation values per batch, {MAX_EPOCHS:,} epochs, batch {MAX_BATCH:,}")


# -- scalars -----------------------------------------------------------------------------------------
def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_int(v, where: str, lo: int, hi: int) -> int:
    """``v`` as an int in [lo, hi], else one line naming ``where``."""
    if not is_int(v):
        raise UserError(f"{where} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise UserError(f"{where} must be from {lo:,} to {hi:,}, got {v:,}")
    return int(v)


def check_threshold(value, source: str) -> float:
    """A decision threshold from any source (meta.json, metrics.json, --threshold): finite, in [0, 1]."""
    if not is_number(value):
        raise UserError(f"{source}: the decision threshold must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise UserError(f"{source}: the decision threshold must be a finite number in [0, 1], got {v}")
    return v


def check_seed(seed, where: str = "--seed") -> int:
    return check_int(seed, where, 0, MAX_SEED)


# -- model sizes -------------------------------------------------------------------------------------
def count_params(spec: dict) -> int | None:
    """Parameters (and BatchNorm buffers) of the model a spec describes; None for kinds not sized here."""
    kind = spec.get("kind")
    if kind == "mlp":
        widths = [spec["in_features"], *spec["hidden"], spec["out_features"]]
        return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    if kind == "cnn":
        c = [spec.get("in_channels", 1), *spec["channels"]]
        n = 9 * c[0] * c[1] + 4 * c[1]  # stem conv + BatchNorm (weight, bias, running mean, var)
        for a, b in zip(c[1:-2], c[2:-1]):  # middle stages
            n += 9 * a * b + 4 * b
        a, b = c[-2], c[-1]  # residual block: two 3×3 convs, a 1×1 projection, three BatchNorms
        n += 9 * a * b + 9 * b * b + a * b + 12 * b
        return n + b * spec["out_features"] + spec["out_features"]
    return None


def activation_elements(spec: dict, batch: int) -> int | None:
    """A generous count of the activation values one training batch keeps for backward."""
    kind, s = spec.get("kind"), spec.get("image_size", 0)
    if kind == "mlp":
        return batch * (spec["in_features"] + 3 * sum(spec["hidden"]))
    if kind == "cnn":
        total, side = 0, s
        for c in spec["channels"]:
            side = (side + 1) // 2
            total += 4 * c * side * side  # conv, norm, relu, pool outputs
        return batch * (s * s + 2 * total)
    return None


def check_model_size(spec: dict, batch_size: int, source: str = "the model") -> None:
    """One line when a model (or one training batch of it) is larger than the limits allow."""
    n = count_params(spec)
    if n is not None and n > MAX_PARAMS:
        raise UserError(f"{source}: {n:,} parameters is more than the limit of {MAX_PARAMS:,} (lower --hidden, "
                        "--channels or --image-size)")
    a = activation_elements(spec, batch_size)
    if a is not None and a > MAX_ACTIVATIONS:
        raise UserError(f"{source}: one batch of {batch_size} needs about {a:,} activation values, more than the "
                        f"limit of {MAX_ACTIVATIONS:,} (lower --batch-size, --hidden, --channels or --image-size)")


def check_spec(spec, source: str) -> dict:
    """The ``model`` section of a checkpoint's config.json: types, ranges and size limits."""
    if not isinstance(spec, dict):
        raise UserError(f"{source}: the 'model' section must be an object, got {type(spec).__name__}")
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise UserError(f"{source}: model 'kind' must be a string such as 'mlp', got {kind!r}")
    where = f"{source}: model"
    check_int(spec.get("image_size"), f"{where} 'image_size'", 4, 1024)
    check_int(spec.get("out_features"), f"{where} 'out_features'", 1, MAX_OUTPUTS)
    dropout = spec.get("dropout", 0.0)
    if not (is_number(dropout) and 0.0 <= dropout < 1.0):
        raise UserError(f"{where} 'dropout' must be a number in [0, 1), got {dropout!r}")
    if kind == "mlp":
        size = spec["image_size"] ** 2
        if spec.get("in_features") != size or not is_int(spec.get("in_features")):
            raise UserError(f"{where} 'in_features' must be image_size² = {size}, got {spec.get('in_features')!r}")
        _check_widths(spec.get("hidden"), f"{where} 'hidden'", 1)
    elif kind == "cnn":
        check_int(spec.get("in_channels"), f"{where} 'in_channels'", 1, 4)
        _check_widths(spec.get("channels"), f"{where} 'channels'", 2)
    elif kind == "densenet121":  # a fixed architecture (8.0 M parameters); only its inputs vary
        check_int(spec.get("in_channels"), f"{where} 'in_channels'", 1, 1)
        check_int(spec.get("image_size"), f"{where} 'image_size'", 29, 1024)
        drop = spec.get("drop_rate", 0.0)
        if not (is_number(drop) and 0.0 <= drop < 1.0):
            raise UserError(f"{where} 'drop_rate' must be a number in [0, 1), got {drop!r}")
    check_model_size(spec, 1, source)
    return spec


def _check_widths(widths, where: str, at_least: int) -> None:
    if not isinstance(widths, list) or not all(is_int(w) for w in widths):
        raise UserError(f"{where} must be a list of integers, got {widths!r}")
    if not at_least <= len(widths) <= MAX_LAYERS:
        raise UserError(f"{where} must hold {at_least} to {MAX_LAYERS} widths, got {len(widths)}")
    for w in widths:
        check_int(w, where, 1, MAX_WIDTH)


def check_data_limits(data: dict, source: str = "") -> None:
    """Sizes in a data config that would allocate before anything else could refuse them."""
    prefix = f"{source}: " if source else ""
    n, size = data.get("synthetic_size"), data.get("image_size")
    if data.get("dataset", "synthetic") == "synthetic" and is_int(n) and is_int(size):
        check_int(n, f"{prefix}--synthetic-size", 10, MAX_SYNTHETIC)
        if n * size * size > MAX_SYNTHETIC_BYTES:
            raise UserError(f"{prefix}--synthetic-size {n:,} at --image-size {size} needs {n * size * size:,} bytes "
                            f"of pixels, more than the limit of {MAX_SYNTHETIC_BYTES:,}")


# -- checkpoint files --------------------------------------------------------------------------------
def check_meta(meta, source: str) -> dict:
    """meta.json: an object whose threshold (when present) is a finite number in [0, 1]."""
    if not isinstance(meta, dict):
        raise UserError(f"{source}: must be a JSON object, got {type(meta).__name__}")
    if "epoch" in meta and meta["epoch"] is not None:
        check_int(meta["epoch"], f"{source}: 'epoch'", 0, MAX_EPOCHS)
    thr = meta.get("threshold")
    if thr is not None:
        if not isinstance(thr, dict):
            raise UserError(f"{source}: 'threshold' must be an object with a 'value', got {thr!r}")
        value = thr.get("value")
        for v in value if isinstance(value, list) else [value]:  # --task findings: one per finding
            if v is not None:
                check_threshold(v, source)
    return meta


HISTORY_NUMBERS = ("train_loss", "val_loss", "val_auc", "lr")


def check_history(history, source: str, length: int | None = None) -> list:
    """history.json (or the resume state's copy): a list of epoch records with numeric entries."""
    n = "" if length is None else f"{length} "
    if not isinstance(history, list) or (length is not None and len(history) != length):
        raise UserError(f"{source}: the history must be a list of {n}epoch records")
    for i, h in enumerate(history):
        if not isinstance(h, dict):
            raise UserError(f"{source}: history entry {i + 1} must be an object, got {h!r:.40}")
        if "epoch" in h:
            check_int(h["epoch"], f"{source}: history entry {i + 1} 'epoch'", 1, MAX_EPOCHS)
        for key in HISTORY_NUMBERS:
            if key in h and h[key] is not None and not is_number(h[key]):
                raise UserError(f"{source}: history entry {i + 1} {key!r} must be a number, got {h[key]!r:.40}")
    return history


def check_resume_state(state, source: str, epochs: int) -> dict:
    """state.json of a last/ checkpoint: the fields ``train --resume`` relies on, typed and in range."""
    if not isinstance(state, dict):
        raise UserError(f"{source}: must be a JSON object, got {type(state).__name__}")
    for key in ("epochs_done", "history", "best_val_auc", "best_epoch", "bad_epochs", "stopped_early", "engine"):
        if key not in state:
            raise UserError(f"{source}: no {key!r} entry")
    done = check_int(state["epochs_done"], f"{source}: 'epochs_done'", 1, min(epochs, MAX_EPOCHS))
    check_history(state["history"], f"{source}: 'history'", done)
    check_int(state["best_epoch"], f"{source}: 'best_epoch'", 0, done)
    check_int(state["bad_epochs"], f"{source}: 'bad_epochs'", 0, done)
    if not isinstance(state["stopped_early"], bool):
        raise UserError(f"{source}: 'stopped_early' must be true or false, got {state['stopped_early']!r}")
    if not is_number(state["best_val_auc"]):
        raise UserError(f"{source}: 'best_val_auc' must be a number, got {state['best_val_auc']!r}")
    engine = state["engine"]
    if not isinstance(engine, dict) or not isinstance(engine.get("optimizer"), dict):
        raise UserError(f"{source}: 'engine' must hold the optimizer state")
    return state


def check_optimizer_state(opt_state: dict, param_shapes: list[tuple], source: str) -> None:
    """Every saved moment / momentum buffer has its parameter's shape, a float dtype, finite values."""
    entries = opt_state.get("state") if isinstance(opt_state, dict) else None
    if not isinstance(entries, dict) or not isinstance(opt_state.get("param_groups"), list):
        raise UserError(f"{source}: the optimizer state needs 'state' and 'param_groups'")
    for key, values in entries.items():
        try:
            shape = param_shapes[int(key)]
        except (ValueError, TypeError, IndexError):
            raise UserError(f"{source}: optimizer state for parameter {key!r}, which the model does not have") from None
        if not isinstance(values, dict):
            raise UserError(f"{source}: optimizer state of parameter {key} must be an object")
        for name, v in values.items():
            a = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            if name == "step":
                if a.size != 1 or not np.isfinite(a.astype(np.float64)).all() or float(a) < 0:
                    raise UserError(f"{source}: optimizer 'step' of parameter {key} must be a non-negative number")
                continue
            if a.dtype.kind != "f" or a.shape != tuple(shape):
                raise UserError(f"{source}: optimizer {name!r} of parameter {key} is {a.dtype} {a.shape}, the "
                                f"parameter is {tuple(shape)}")
            if not np.isfinite(a).all():
                raise UserError(f"{source}: optimizer {name!r} of parameter {key} holds NaN or infinite values")


# -- arrays --------------------------------------------------------------------------------------------
def check_names_and_shapes(expected: dict[str, tuple], found: dict[str, tuple], source: str, model: str) -> None:
    """One clear line when saved arrays (name -> shape) do not fit the model's (name -> shape).

    Lists the first few shapes that differ, names missing and names unexpected, in a ``UserError``.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k])} vs {tuple(expected[k])}" for k in expected
              if k in found and tuple(found[k]) != tuple(expected[k])]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append("shape checkpoint vs model: " + "; ".join(shapes[:3]) + (" ..." if len(shapes) > 3 else ""))
    if missing:
        parts.append("missing: " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
    if unexpected:
        parts.append("unexpected: " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
    raise UserError(f"{source} does not fit the model {model}: " + " | ".join(parts))


def expect_headers(expected: dict[str, tuple], source: str, model: str):
    """A ``check`` for ``numpy_nn.serialization.load``: names, shapes and dtypes before reading.

    ``expected`` maps each name to ``(shape, dtype)`` (the dtype of the array the model holds:
    float members must be float32 or float64, integer buffers an integer dtype).
    """

    def check(headers: dict) -> None:
        check_names_and_shapes({k: e[0] for k, e in expected.items()}, {k: h[0] for k, h in headers.items()},
                               source, model)
        for k, (_, dtype) in headers.items():
            _check_dtype(dtype, np.dtype(expected[k][1]).kind in "iu", source, k)

    return check


def bounded_headers(max_elements: int, source: str, allow_bytes: bool = False):
    """A ``check`` for arrays whose exact shapes are not known in advance (resume state): each
    member at most ``max_elements`` values, float32/float64 (uint8/int64 too with ``allow_bytes``)."""

    def check(headers: dict) -> None:
        if len(headers) > 64 + 8 * MAX_LAYERS * 8:
            raise UserError(f"{source}: {len(headers)} arrays, more than any checkpoint of ours holds")
        for k, (shape, dtype) in headers.items():
            n = math.prod(shape)
            if n > max_elements:
                raise UserError(f"{source}: array {k!r} of shape {shape} is larger than any state of this model")
            _check_dtype(dtype, allow_bytes and dtype.kind in "iu", source, k)

    return check


def _check_dtype(dtype: np.dtype, integer_ok: bool, source: str, key: str) -> None:
    if integer_ok and dtype.kind in "iu" and dtype.isnative:
        return
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"{source}: array {key!r} has dtype {dtype}; only float32 or float64 are accepted")


def check_finite(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """One line naming the file and the first array holding NaN or an infinity."""
    for k, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            raise UserError(f"{source}: array {k!r} holds {bad} NaN or infinite value(s); the checkpoint is corrupt")
    return arrays
