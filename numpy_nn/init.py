"""Weight initialisation, in place, with torch.nn.init's names and formulas.

Twin: ``torch.nn.init``. Each function takes a ``Parameter`` or an array, fills it in place and
returns it. ``fan_in``/``fan_out`` follow torch: for a weight of shape ``(out, in, *kernel)``,
fan_in = in * prod(kernel) and fan_out = out * prod(kernel).
"""

from __future__ import annotations

import math

import numpy as np

from .module import Parameter
from .rng import default_generator


def _array(t) -> np.ndarray:
    return t.data if isinstance(t, Parameter) else t


def _fill(t, values: np.ndarray):
    arr = _array(t)
    arr[...] = values.astype(arr.dtype, copy=False)
    return t


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain: linear/sigmoid 1, tanh 5/3, relu √2, leaky_relu √(2/(1+a²))."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fan(shape, mode: str) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")


def uniform_(t, a: float = 0.0, b: float = 1.0, generator=None):
    g = generator or default_generator()
    return _fill(t, g.uniform(a, b, size=_array(t).shape))


def normal_(t, mean: float = 0.0, std: float = 1.0, generator=None):
    g = generator or default_generator()
    return _fill(t, g.normal(mean, std, size=_array(t).shape))


def constant_(t, val: float):
    _array(t)[...] = val
    return t


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def kaiming_uniform_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """U(-bound, bound), bound = gain · √(3 / fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(_array(t).shape, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """N(0, std²), std = gain / √fan (He et al., 2015)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(_array(t).shape, mode))
    return normal_(t, 0.0, std, generator)


def xavier_uniform_(t, gain: float = 1.0, generator=None):
    """U(-a, a), a = gain · √(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(_array(t).shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t, gain: float = 1.0, generator=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(_array(t).shape)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)
