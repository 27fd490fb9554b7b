"""Dense layers and element-wise activations, each backward written under its forward.

Twins: ``torch.nn.Linear``, ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softmax``,
``Dropout``, ``Flatten`` (see ``torch_ref`` for the weight exchange and the shared dropout masks).

Shape letters: N batch, D features (D_in, D_out).
"""

from __future__ import annotations

import math

import numpy as np

from . import init
from .module import Module, Parameter
from .rng import default_generator


def _check_dtype(x: np.ndarray, w: np.ndarray, layer: str) -> None:
    if x.dtype != w.dtype:
        raise TypeError(
            f"{layer}: input dtype {x.dtype} differs from parameter dtype {w.dtype}; "
            "cast the model with .to(dtype) / .double() / .float()"
        )


class Linear(Module):
    """y = x Wᵀ + b.

    Args:
        in_features, out_features: D_in and D_out.
        bias: learn an additive bias (default True).
        dtype: parameter dtype (default float32, as torch).

    Shape: input (N, *, D_in) -> output (N, *, D_out).

    Attributes:
        weight: (D_out, D_in), init U(-1/√D_in, 1/√D_in) (torch's kaiming_uniform_(a=√5)).
        bias: (D_out,), init U(-1/√D_in, 1/√D_in).
        needs_input_grad: whether ``backward`` computes dL/dx (default True). Set it False on a
            network's first layer when its input is data: ``backward`` then returns None and
            skips the (N, D_out)(D_out, D_in) product, a third of the layer's work, just as
            torch's autograd skips it for an input with ``requires_grad=False`` (the name is
            torch's ``ctx.needs_input_grad``).

    Example:
        >>> layer = Linear(3, 2); layer(np.ones((4, 3), np.float32)).shape
        (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias = Parameter(np.empty((out_features,), dtype=dtype)) if bias else None
        self.needs_input_grad = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        _check_dtype(x, self.weight.data, "Linear")
        self._x = x
        y = x @ self.weight.data.T  # (N, D_in)(D_in, D_out) -> (N, D_out)
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_output):
        # Y = X Wᵀ + b        X (N, D_in)  W (D_out, D_in)  Y (N, D_out)
        # dX = dY W           (N, D_out)(D_out, D_in) -> (N, D_in)
        # dW = dYᵀ X          (D_out, N)(N, D_in)     -> (D_out, D_in)
        # db = Σ_n dY         -> (D_out,)
        x = self._x
        dy2 = grad_output.reshape(-1, self.out_features)
        x2 = x.reshape(-1, self.in_features)
        self.weight.accumulate_grad(dy2.T @ x2)
        if self.bias is not None:
            self.bias.accumulate_grad(dy2.sum(axis=0))
        return grad_output @ self.weight.data if self.needs_input_grad else None

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """y = max(x, 0). Twin: ``torch.nn.ReLU``."""

    def forward(self, x):
        self._mask = x > 0
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, grad_output):
        # dy/dx = 1 for x > 0, 0 for x < 0. At the kink x = 0 we use 0, as torch does.
        return grad_output * self._mask


class LeakyReLU(Module):
    """y = x for x > 0, else negative_slope · x. Twin: ``torch.nn.LeakyReLU``."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        self._pos = x > 0
        return np.where(self._pos, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad_output):
        # dy/dx = 1 for x > 0, negative_slope otherwise (x = 0 takes the slope, as torch).
        return np.where(self._pos, grad_output, grad_output * grad_output.dtype.type(self.negative_slope))

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e^{-x}), computed without overflow.

    For x ≥ 0: 1 / (1 + e^{-x}); for x < 0: e^{x} / (1 + e^{x}). Both use e^{-|x|} ∈ (0, 1],
    which never overflows, so logits of ±1e4 give exactly 1 and 0 (never nan).
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Module):
    """y = σ(x). Twin: ``torch.nn.Sigmoid``."""

    def forward(self, x):
        self._y = sigmoid(x)
        return self._y

    def backward(self, grad_output):
        # dσ/dx = σ(x)(1 − σ(x)) = y(1 − y)
        y = self._y
        return grad_output * y * (1 - y)


class Tanh(Module):
    """y = tanh(x). Twin: ``torch.nn.Tanh``."""

    def forward(self, x):
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_output):
        # d tanh/dx = 1 − tanh²(x) = 1 − y²
        return grad_output * (1 - self._y * self._y)


class Softmax(Module):
    """y_i = e^{x_i} / Σ_j e^{x_j} along ``dim``. Twin: ``torch.nn.Softmax``.

    Stable: subtracting max_j x_j leaves y unchanged and keeps every exponent ≤ 0.
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        z = x - x.max(axis=self.dim, keepdims=True)
        e = np.exp(z)
        self._y = e / e.sum(axis=self.dim, keepdims=True)
        return self._y

    def backward(self, grad_output):
        # Jacobian: ∂y_i/∂x_j = y_i (δ_ij − y_j), so
        # dx_j = Σ_i dy_i y_i (δ_ij − y_j) = y_j (dy_j − Σ_i dy_i y_i)
        y = self._y
        return y * (grad_output - (grad_output * y).sum(axis=self.dim, keepdims=True))

    def extra_repr(self):
        return f"dim={self.dim}"


def dropout_mask(generator: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Keep-mask of inverted dropout: True with probability 1 − p.

    Both tracks draw masks with this one function (torch_ref's ``NumpyMaskDropout`` too), so a
    generator seeded alike yields the same masks in either track.
    """
    return generator.random(shape, dtype=np.float32) >= np.float32(p)


class Dropout(Module):
    """Inverted dropout: y = x · m / (1 − p), m_i ~ Bernoulli(1 − p); identity in eval mode.

    Twin: ``torch.nn.Dropout``. Dividing by (1 − p) in training keeps E[y] = x, so evaluation
    needs no rescaling. ``p = 1`` zeroes everything (as torch).

    Args:
        p: probability of zeroing an element.
        generator: a ``np.random.Generator`` for the masks (default: ``numpy_nn.rng``'s).
    """

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.generator = generator
        self._scaled_mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        keep = dropout_mask(self.generator or default_generator(), x.shape, self.p)
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        # One array m = keep / (1 − p) serves forward and backward.
        self._scaled_mask = keep * x.dtype.type(scale)
        return x * self._scaled_mask

    def backward(self, grad_output):
        # y = x · m  =>  dx = dy · m   (identity when no mask was applied)
        if self._scaled_mask is None:
            return grad_output
        return grad_output * self._scaled_mask

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge dims start_dim..end_dim. Twin: ``torch.nn.Flatten`` (defaults 1, -1).

    Shape: (N, C, H, W) -> (N, C·H·W). Backward reshapes the gradient back.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        self._shape = x.shape
        nd = x.ndim
        s, e = self.start_dim % nd, self.end_dim % nd
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :])

    def backward(self, grad_output):
        return grad_output.reshape(self._shape)
