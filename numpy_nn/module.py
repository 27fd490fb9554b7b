"""Parameter, Module, Sequential, Identity: the contract every numpy_nn layer follows.

Twin: ``torch.nn.Parameter`` / ``torch.nn.Module`` / ``torch.nn.Sequential``.

The contract (see DESIGN.md):

* ``forward(x)`` (also ``__call__``) computes the output and caches what the backward needs.
* ``backward(grad_output) -> grad_input`` applies the chain rule by hand and **adds** into each
  parameter's ``.grad`` (gradients accumulate, as with torch autograd, until ``zero_grad()``).
* ``named_parameters()`` yields torch's dotted names (``layers.0.weight``), ``state_dict()``
  adds buffers (e.g. BatchNorm running statistics) under torch's names.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np


class Parameter:
    """A trainable array and its gradient.

    Attributes:
        data: the values, a NumPy array (float32 for training, float64 for checks).
        grad: ``None`` until a backward reaches it, then an array of ``data``'s shape and dtype.
            ``zero_grad()`` resets it to ``None`` (torch's ``set_to_none=True`` default).
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = np.asarray(data)
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def accumulate_grad(self, g: np.ndarray) -> None:
        """``grad += g``. The first contribution is adopted without a copy (the caller must
        hand over a fresh array), later ones are added in place."""
        if g.shape != self.data.shape:
            raise ValueError(f"gradient of shape {g.shape} for a parameter of shape {self.data.shape}")
        if self.grad is None:
            self.grad = g if g.dtype == self.data.dtype else g.astype(self.data.dtype)
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses assign ``Parameter``s, sub-``Module``s and buffers (plain arrays registered with
    ``register_buffer``) as attributes; registration order fixes the order of
    ``named_parameters()`` and ``state_dict()``, exactly as in torch.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("call Module.__init__() before assigning attributes")
        # Re-assigning an array to a registered buffer (``self.running_mean = new``) keeps it a
        # buffer, in its place, as in torch; anything else (None included) unregisters it.
        keep_buffer = name in self._buffers and isinstance(value, (np.ndarray, np.generic))
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if not keep_buffer:
            self._buffers.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A state array that is saved in ``state_dict`` but not trained (torch's buffers)."""
        self.__setattr__(name, value)
        self._buffers[name] = True

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # -- traversal ------------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, mod in self._modules.items():
            yield from mod.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules():
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.fill(0)

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- dtype ----------------------------------------------------------------------------------
    def to(self, dtype) -> "Module":
        """Cast every floating parameter and buffer to ``dtype`` (gradients are dropped)."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = None
            for name in m._buffers:
                buf = getattr(m, name)
                if np.issubdtype(buf.dtype, np.floating):
                    object.__setattr__(m, name, buf.astype(dtype))
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by torch's dotted names, in torch's order (copies)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                out[pre + name] = p.data.copy()
            for name in mod._buffers:
                out[pre + name] = np.array(getattr(mod, name), copy=True)
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers.

        Raises ``KeyError`` naming missing or unexpected keys (when ``strict``) and ``ValueError``
        naming every key whose shape differs. Values are cast to the receiving array's dtype.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        shape_errors = [
            f"{k}: checkpoint {tuple(np.shape(state_dict[k]))} vs model {own[k].shape}"
            for k in own
            if k in state_dict and tuple(np.shape(state_dict[k])) != own[k].shape
        ]
        if shape_errors:
            raise ValueError("size mismatch for " + "; ".join(shape_errors))
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(unexpected))
            raise KeyError("Error(s) in loading state_dict: " + "; ".join(parts))
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if pre + name in state_dict:
                    p.data = np.array(state_dict[pre + name], dtype=p.data.dtype, copy=True)
            for name in mod._buffers:
                if pre + name in state_dict:
                    cur = getattr(mod, name)
                    object.__setattr__(mod, name, np.array(state_dict[pre + name], dtype=cur.dtype, copy=True))

    # -- display --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Twin: ``torch.nn.Sequential``. Children are named ``"0"``, ``"1"``, ... so parameter names
    read ``0.weight`` exactly as in torch.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x: np.ndarray) -> np.ndarray:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        # Chain rule through a composition f_n ∘ ... ∘ f_1: dL/dx_{i-1} = backward_i(dL/dx_i).
        for m in reversed(self._modules.values()):
            grad_output = m.backward(grad_output)
        return grad_output


class Identity(Module):
    """y = x; dx = dy. Twin: ``torch.nn.Identity``."""

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output
