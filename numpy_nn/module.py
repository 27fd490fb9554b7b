"""Parameter, Module, Sequential, Identity: the contract every numpy_nn layer follows.

Twin: ``torch.nn.Parameter`` / ``torch.nn.Module`` / ``torch.nn.Sequential``.

The contract (see DESIGN.md):

* ``forward(x)`` (also ``__call__``) computes the output and caches what the backward needs.
* ``backward(grad_output) -> grad_input`` applies the chain rule by hand and **adds** into each
  parameter's ``.grad`` (gradients accumulate, as with torch autograd, until ``zero_grad()``).
* ``named_parameters()`` yields torch's dotted names (``layers.0.weight``), ``state_dict()``
  adds buffers (e.g. BatchNorm running statistics) under torch's names.
* Hooks, with torch's names and semantics: ``register_forward_pre_hook``,
  ``register_forward_hook`` (run by ``__call__`` around ``forward``) and
  ``register_full_backward_hook`` (run after the module's ``backward``), each returning a
  ``RemovableHandle``. Explanations (``numpy_nn/explain.py``) read a layer's activation and its
  gradient through them, as captum and pytorch-grad-cam do in torch.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Iterator

import numpy as np


class RemovableHandle:
    """What ``register_*_hook`` returns: ``handle.remove()`` unregisters the hook (a second call
    does nothing); also a context manager that removes it on exit.

    Twin: ``torch.utils.hooks.RemovableHandle``.
    """

    _ids = itertools.count()

    def __init__(self, hooks: "OrderedDict[int, object]"):
        self.hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _add_hook(hooks: "OrderedDict[int, object]", hook, prepend: bool) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


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
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())

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

    def __call__(self, *args):
        """``forward(*args)`` between the forward pre-hooks and the forward hooks (torch's order:
        pre-hooks, forward, hooks; each list in registration order, ``prepend=True`` first)."""
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # -- hooks (torch.nn.Module's) ----------------------------------------------------------------
    def register_forward_pre_hook(self, hook, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, args) -> None or new args`` runs before ``forward``; ``args`` is the
        tuple of positional inputs, a non-tuple return value becomes a 1-tuple. numpy_nn has no
        autograd: ``backward`` differentiates ``forward`` only, not what a hook did to its input.
        Twin: ``torch.nn.Module.register_forward_pre_hook``."""
        return _add_hook(self._forward_pre_hooks, hook, prepend)

    def register_forward_hook(self, hook, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, args, output) -> None or new output`` runs after ``forward``. A
        returned value replaces the output seen by the caller; ``backward`` stays the derivative
        of ``forward`` alone, so a replacement must not change what the layer's backward uses.
        Twin: ``torch.nn.Module.register_forward_hook``."""
        return _add_hook(self._forward_hooks, hook, prepend)

    def register_full_backward_hook(self, hook, *, prepend: bool = False) -> RemovableHandle:
        """``hook(module, grad_input, grad_output) -> None or new grad_input`` runs when this
        module's ``backward`` has computed the gradient with respect to its input.

        ``grad_output = (dL/dy,)`` and ``grad_input = (dL/dx,)`` are 1-tuples (numpy_nn modules
        take one input); ``dL/dx`` is ``None`` where the module skips it (a first layer with
        ``needs_input_grad = False``, as torch passes ``None`` for an input without
        ``requires_grad``). A returned 1-tuple replaces ``grad_input``: the caller of
        ``backward`` receives it. Hooks of inner modules run before their container's, in the
        order their backwards run. Twin: ``torch.nn.Module.register_full_backward_hook``.

        Mechanism: the first registration shadows the class's ``backward`` with an instance
        attribute that calls it and then the hooks (callers keep writing ``m.backward(g)``).
        """
        if "backward" not in self.__dict__:
            object.__setattr__(self, "backward", self._backward_with_hooks)
        return _add_hook(self._backward_hooks, hook, prepend)

    def _backward_with_hooks(self, grad_output):
        grad_input = type(self).backward(self, grad_output)
        for hook in list(self._backward_hooks.values()):
            result = hook(self, (grad_input,), (grad_output,))
            if result is not None:
                if not isinstance(result, tuple) or len(result) != 1:
                    got = len(result) if isinstance(result, tuple) else type(result).__name__
                    raise RuntimeError(f"backward hook returned an invalid number of grad_input, got {got}, but expected 1")
                grad_input = result[0]
        return grad_input

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
