"""A tiny neural-network library on ``Value``: ``Neuron``, ``Layer``, ``MLP``, losses and ``fit``.

Twin: ``numpy_nn.layers.Linear`` + activations (the same maths on arrays, with hand-written
backward) and ``torch.nn.Linear``. Parameters are named as torch names them
(``layers.0.weight``; ``weight`` is (out, in)) so weights and gradients move between the scalar
engine, numpy_nn and torch with no transposes: ``from_numpy_nn`` builds the scalar twin of a
numpy_nn network, ``MLP.grad_dict()`` returns the gradients in numpy_nn's layout.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from .engine import Value

ACTIVATIONS = ("tanh", "relu", "sigmoid", None)


class Module:
    """Base class: ``parameters()`` and ``zero_grad()`` (twin: ``numpy_nn.Module``)."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to 0 (leaves accumulate across ``backward`` calls)."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """One unit: y = act(Σᵢ wᵢ xᵢ + b).

    Args:
        nin: number of inputs.
        activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``None`` (linear).
        rng: a ``random.Random`` for the init.

    Init: wᵢ, b ~ U(−1/√nin, 1/√nin), the distribution of torch's (and numpy_nn's) Linear default.
    """

    def __init__(self, nin: int, activation: str | None = "tanh", rng: random.Random | None = None, name: str = ""):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        rng = rng or random.Random(0)
        bound = 1.0 / math.sqrt(nin)
        self.w = [Value(rng.uniform(-bound, bound), label=f"{name}w[{i}]") for i in range(nin)]
        self.b = Value(rng.uniform(-bound, bound), label=f"{name}b")
        self.activation = activation

    def __call__(self, x: Sequence) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"Neuron with {len(self.w)} inputs got {len(x)}")
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)  # b + w₀x₀ + w₁x₁ + ...
        return z if self.activation is None else getattr(z, self.activation)()

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, activation={self.activation!r})"


class Layer(Module):
    """``nout`` neurons reading the same inputs: y = act(x Wᵀ + b) computed scalar by scalar.

    Args:
        nin, nout: D_in and D_out.
        activation: applied to every output (``None``: linear).
        rng: a ``random.Random`` for the init.
        name: the torch-style prefix of its parameters (``layers.0`` -> ``layers.0.weight``).
    """

    def __init__(self, nin: int, nout: int, activation: str | None = "tanh", rng=None, name: str = ""):
        rng = rng or random.Random(0)
        self.name = name
        self.activation = activation
        self.neurons = [Neuron(nin, activation, rng, name=f"{name}[{j}].") for j in range(nout)]

    def __call__(self, x: Sequence) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer({len(self.neurons[0].w)}, {len(self.neurons)}, activation={self.activation!r})"


class MLP(Module):
    """Layers applied in order; the hidden ones use ``activation``, the last is linear.

    Args:
        nin: input size.
        nouts: the width of each layer, the last one being the output size (``[4, 4, 1]``).
        activation: hidden activation, ``"tanh"`` or ``"relu"`` (or ``"sigmoid"``).
        output_activation: activation of the last layer (default ``None``: logits, as torch).
        seed: seeds the init (``random.Random(seed)``), so two MLPs built alike are equal.

    Calling it on a list of ``nin`` numbers or Values returns a list of Values, or the single
    Value itself when the last layer has one output (micrograd's convention).

    Parameter names: ``layers.{i}.weight`` (nout, nin) and ``layers.{i}.bias`` (nout,),
    i = 0, 1, ... (``from_numpy_nn`` takes the names of the network it copies instead).

    Example:
        >>> model = MLP(3, [4, 4, 1])
        >>> model([2.0, 3.0, -1.0])  # doctest: +ELLIPSIS
        Value(data=..., grad=0)
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str | None = "tanh",
                 output_activation: str | None = None, seed: int = 0):
        rng = random.Random(seed)
        sizes = [nin, *nouts]
        self.layers = [
            Layer(sizes[i], sizes[i + 1], activation if i < len(nouts) - 1 else output_activation, rng, f"layers.{i}")
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence):
        for layer in self.layers:
            x = layer(x)
        return x[0] if len(x) == 1 else x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    # -- exchange with numpy_nn / torch: arrays in torch's layout ------------------------------
    def _arrays(self, attr: str) -> OrderedDict[str, np.ndarray]:
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for layer in self.layers:
            # weight row j is neuron j's w: (nout, nin), torch's layout
            out[f"{layer.name}.weight"] = np.array([[getattr(w, attr) for w in n.w] for n in layer.neurons])
            out[f"{layer.name}.bias"] = np.array([getattr(n.b, attr) for n in layer.neurons])
        return out

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Weights as float64 arrays by torch names: ``{name}.weight`` (out, in), ``{name}.bias`` (out,)."""
        return self._arrays("data")

    def grad_dict(self) -> OrderedDict[str, np.ndarray]:
        """The parameters' gradients, laid out and named exactly as ``state_dict()``."""
        return self._arrays("grad")

    def load_state_dict(self, state: dict) -> None:
        """Copy weights in from arrays in torch's layout (e.g. a numpy_nn ``state_dict()``).

        Every key and shape must match; values become Python floats (float32 converts exactly).
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for k, v in own.items():
            if np.shape(state[k]) != v.shape:
                raise ValueError(f"size mismatch for {k}: given {np.shape(state[k])}, model {v.shape}")
        for layer in self.layers:
            weight = np.asarray(state[f"{layer.name}.weight"], dtype=np.float64)
            bias = np.asarray(state[f"{layer.name}.bias"], dtype=np.float64)
            for j, neuron in enumerate(layer.neurons):
                for i, w in enumerate(neuron.w):
                    w.data = float(weight[j, i])
                neuron.b.data = float(bias[j])

    def __repr__(self) -> str:
        return "MLP(" + ", ".join(repr(layer) for layer in self.layers) + ")"


def from_numpy_nn(model) -> MLP:
    """The scalar-engine twin of a numpy_nn network of Linear layers and activations.

    Walks ``model``'s modules in order (a ``Sequential``, ``numpy_nn.models.MLP`` or any
    container): each ``Linear`` becomes a ``Layer`` named as in ``model.named_parameters()``,
    a following ``Tanh`` / ``ReLU`` / ``Sigmoid`` becomes its activation; ``Identity`` and
    ``Flatten`` are skipped, as is ``Dropout`` with p = 0 or in eval mode (any other module
    raises ``TypeError``). Then copies the weights with ``load_state_dict(model.state_dict())``,
    so ``mlp.grad_dict()`` and ``model.named_parameters()`` share names and shapes.
    """
    from .. import layers as L
    from ..module import Identity

    acts = {L.Tanh: "tanh", L.ReLU: "relu", L.Sigmoid: "sigmoid"}
    specs: list[list] = []  # [name, nin, nout, activation] per Linear
    for name, mod in model.named_modules():
        if any(True for _ in mod.children()):
            continue  # a container: its children come next
        if isinstance(mod, L.Linear):
            if mod.bias is None:
                raise TypeError(f"{name}: Linear without bias is not supported by the scalar MLP")
            specs.append([name, mod.in_features, mod.out_features, None])
        elif type(mod) in acts:
            if not specs or specs[-1][3] is not None:
                raise TypeError(f"{name}: an activation must follow a Linear")
            specs[-1][3] = acts[type(mod)]
        elif isinstance(mod, (Identity, L.Flatten)) or (isinstance(mod, L.Dropout) and (mod.p == 0 or not mod.training)):
            continue
        else:
            raise TypeError(f"{name}: {type(mod).__name__} has no scalar-engine twin")
    if not specs:
        raise TypeError("the model has no Linear layer")
    mlp = MLP.__new__(MLP)
    mlp.layers = [Layer(nin, nout, act, random.Random(0), name) for name, nin, nout, act in specs]
    mlp.load_state_dict(model.state_dict())
    return mlp


# -- losses -------------------------------------------------------------------------------------
def mse_loss(preds: Sequence[Value], targets: Sequence[float]) -> Value:
    """L = (1/N) Σₙ (pₙ − yₙ)². Twin: ``numpy_nn.losses.MSELoss`` / ``torch.nn.MSELoss``."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    return sum((p - y) ** 2 for p, y in zip(preds, targets)) / len(preds)


def bce_with_logits_loss(logits: Sequence[Value], targets: Sequence[float]) -> Value:
    """L = (1/N) Σₙ softplus(zₙ) − zₙ yₙ, binary cross-entropy on logits.

    Twin: ``numpy_nn.losses.BCEWithLogitsLoss`` / ``torch.nn.BCEWithLogitsLoss``. Since
    −[y log σ(z) + (1 − y) log(1 − σ(z))] = log(1 + eᶻ) − z y, writing it with the stable
    ``softplus`` never takes log(0) or overflows, and ∂L/∂zₙ = (σ(zₙ) − yₙ)/N exactly.
    """
    if len(logits) != len(targets):
        raise ValueError(f"{len(logits)} logits for {len(targets)} targets")
    return sum(z.softplus() - z * y for z, y in zip(logits, targets)) / len(logits)


# -- training ------------------------------------------------------------------------------------
CLASSIC_XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
CLASSIC_YS = [1.0, -1.0, -1.0, 1.0]


def fit(model: MLP, xs: Sequence[Sequence[float]], ys: Sequence[float], steps: int = 100, lr: float = 0.1,
        loss_fn: Callable[[Sequence[Value], Sequence[float]], Value] = mse_loss,
        callback: Callable[[int, float], None] | None = None) -> list[float]:
    """Full-batch gradient descent (plain SGD, twin: ``numpy_nn.optim.SGD`` without momentum).

    Each step: forward every sample, loss, ``zero_grad()`` (leaves accumulate otherwise),
    ``backward()``, then p ← p − lr · ∂L/∂p. Returns the loss before each update, and calls
    ``callback(step, loss)`` if given.
    """
    losses = []
    for step in range(steps):
        preds = [model(x) for x in xs]
        loss = loss_fn(preds, ys)
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad
        losses.append(loss.data)
        if callback is not None:
            callback(step, loss.data)
    return losses


def classic_example(steps: int = 200, lr: float = 0.1, seed: int = 0, callback=None) -> tuple[MLP, list[float]]:
    """The classic demo: a 3 -> 4 -> 4 -> 1 tanh MLP fitted to four samples (MSE, SGD).

    Returns the trained model and its loss history.
    """
    model = MLP(3, [4, 4, 1], activation="tanh", seed=seed)
    return model, fit(model, CLASSIC_XS, CLASSIC_YS, steps=steps, lr=lr, callback=callback)
