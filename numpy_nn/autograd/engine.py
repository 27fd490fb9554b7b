"""``Value``: a scalar reverse-mode autodiff engine, written to be read.

Twin: ``torch.Tensor`` with ``requires_grad=True`` (0-d, float64) and ``torch.autograd``.
The idea is micrograd's: every ``Value`` remembers the ``Value``s it was computed from (its
children in the graph) and, for each child, the *local derivative* ∂out/∂child, evaluated at
forward time. ``backward()`` then applies the chain rule once per edge, in reverse topological
order::

    child.grad += (∂out/∂child) · out.grad

Each operation below states its local derivative on the line under its forward. Operations that
are compositions of others (``a - b = a + (−b)``, ``a / b = a · b⁻¹``) are written as such and get
their gradient for free.

What this engine does that the usual teaching versions get wrong:

* gradients **accumulate** (``+=``): ``a + a`` and ``x * x`` use a value twice, so its gradient
  is the sum of both paths (assigning with ``=`` keeps only the last path);
* plain numbers are wrapped into constant ``Value``s, so ``2 * v``, ``1 - v``, ``v / 3`` and
  ``sum([v, w])`` (which starts from ``0 + v``) all work and backpropagate;
* the topological order is built with an explicit stack, never recursion, so a graph 100,000
  nodes deep backpropagates without touching Python's recursion limit;
* calling ``backward()`` twice is well defined (see ``Value.backward``).

Everything is Python ``float`` (IEEE float64), so results agree with torch's float64 to rounding.
"""

from __future__ import annotations

import math
import numbers


class Value:
    """A scalar that records how it was computed, so it can backpropagate.

    Args:
        data: the number (anything ``float()`` accepts that is a real number).
        label: an optional name shown by ``to_dot``.

    Attributes:
        data: the forward value, a Python ``float``.
        grad: ∂root/∂self after ``root.backward()``; ``0.0`` before.
        label: display name.

    Example:
        >>> a, b = Value(2.0), Value(-3.0)
        >>> c = a * b + a          # a is used twice
        >>> c.backward()
        >>> a.grad, b.grad         # ∂c/∂a = b + 1, ∂c/∂b = a
        (-2.0, 2.0)
    """

    __slots__ = ("data", "grad", "label", "_children", "_local_grads", "_op")

    def __init__(self, data, label: str = "", *, _children: tuple = (), _local_grads: tuple = (), _op: str = ""):
        if isinstance(data, Value):
            raise TypeError("Value(Value(...)): pass the number (v.data), not the Value")
        if not isinstance(data, numbers.Real):
            raise TypeError(f"Value needs a real number, got {type(data).__name__}: {data!r}")
        self.data = float(data)
        self.grad = 0.0
        self.label = label
        self._children: tuple[Value, ...] = _children  # the Values this one was computed from
        self._local_grads: tuple[float, ...] = _local_grads  # ∂self/∂child, one per child
        self._op = _op  # the operation's symbol, for display

    # -- primitive operations: forward, then the local derivative(s) ----------------------------
    def __add__(self, other) -> Value:
        other = _as_value(other)
        out = self.data + other.data
        # ∂(a + b)/∂a = 1,   ∂(a + b)/∂b = 1
        return Value(out, _children=(self, other), _local_grads=(1.0, 1.0), _op="+")

    def __mul__(self, other) -> Value:
        other = _as_value(other)
        out = self.data * other.data
        # ∂(a · b)/∂a = b,   ∂(a · b)/∂b = a
        return Value(out, _children=(self, other), _local_grads=(other.data, self.data), _op="*")

    def __pow__(self, n) -> Value:
        """``x ** n`` for a plain number ``n`` (int or float; a ``Value`` exponent is refused).

        Raises ``ValueError`` for a negative base with a non-integer exponent (not a real number;
        torch gives nan), ``ZeroDivisionError`` for ``0 ** n`` with ``n < 0`` (torch gives inf) and
        ``OverflowError`` when the result exceeds float64.
        """
        if isinstance(n, Value) or not isinstance(n, numbers.Real):
            raise TypeError(f"Value ** n needs a plain number n, got {type(n).__name__}; for x ** y use (y * x.log()).exp()")
        n = float(n)
        x = self.data
        if x < 0 and not n.is_integer():
            raise ValueError(f"({x}) ** {n}: a negative base with a fractional exponent is not a real number")
        if x == 0 and n < 0:
            raise ZeroDivisionError(f"0.0 ** {n}: zero raised to a negative power")
        try:
            out = x**n
        except OverflowError:
            raise OverflowError(f"({x}) ** {n} overflows float64") from None
        # ∂(xⁿ)/∂x = n · xⁿ⁻¹.  At x = 0 (only n ≥ 0 gets here) xⁿ⁻¹ is undefined for n < 1, so
        # we take torch's values: 0 for n = 0, +inf for 0 < n < 1.
        if x != 0 or n >= 1:
            local = n * x ** (n - 1)
        else:
            local = 0.0 if n == 0 else math.inf
        return Value(out, _children=(self,), _local_grads=(local,), _op=f"**{n:g}")

    def exp(self) -> Value:
        """e^x. Raises ``OverflowError`` for x > 709.78 (e^x exceeds float64; torch gives inf)."""
        try:
            out = math.exp(self.data)
        except OverflowError:
            raise OverflowError(f"exp({self.data}) overflows float64 (the largest argument is ~709.78)") from None
        # ∂eˣ/∂x = eˣ
        return Value(out, _children=(self,), _local_grads=(out,), _op="exp")

    def log(self) -> Value:
        """Natural logarithm. Raises ``ValueError`` for x ≤ 0 (torch gives -inf at 0, nan below)."""
        x = self.data
        if x <= 0:
            raise ValueError(f"log({x}): the logarithm is only defined for positive numbers")
        out = math.log(x)
        # ∂ln x/∂x = 1/x       (x = 1e-300 gives 1e300: large, but finite)
        return Value(out, _children=(self,), _local_grads=(1.0 / x,), _op="log")

    def tanh(self) -> Value:
        out = math.tanh(self.data)  # math.tanh saturates to ±1 without overflow
        # ∂tanh x/∂x = 1 − tanh²x
        return Value(out, _children=(self,), _local_grads=(1.0 - out * out,), _op="tanh")

    def relu(self) -> Value:
        x = self.data
        out = x if x > 0 else 0.0
        # ∂relu/∂x = 1 for x > 0, 0 for x < 0; at the kink x = 0 we use 0, as torch does.
        return Value(out, _children=(self,), _local_grads=(1.0 if x > 0 else 0.0,), _op="relu")

    def sigmoid(self) -> Value:
        """σ(x) = 1 / (1 + e⁻ˣ), computed so that no exponent is positive (no overflow).

        For x ≥ 0: 1 / (1 + e⁻ˣ); for x < 0: eˣ / (1 + eˣ). Both only ever exponentiate −|x| ≤ 0,
        so σ(±1000) is exactly 1.0 / 0.0 instead of an OverflowError.
        """
        out = _sigmoid(self.data)
        # ∂σ/∂x = σ(x) (1 − σ(x))
        return Value(out, _children=(self,), _local_grads=(out * (1.0 - out),), _op="σ")

    def softplus(self) -> Value:
        """log(1 + eˣ), computed as max(x, 0) + log1p(e^{−|x|}) (no overflow for large x).

        A primitive rather than ``(1 + x.exp()).log()`` because that overflows for x > 709 and,
        as the building block of BCE on logits, its gradient should be exactly σ(x) everywhere
        (a composition through relu/abs would be wrong at the kink x = 0).
        """
        x = self.data
        out = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
        # ∂softplus/∂x = σ(x)
        return Value(out, _children=(self,), _local_grads=(_sigmoid(x),), _op="softplus")

    # -- composite operations: built from the primitives above ---------------------------------
    def __neg__(self) -> Value:  # −a = a · (−1)
        return self * -1.0

    def __sub__(self, other) -> Value:  # a − b = a + (−b)
        return self + (-_as_value(other))

    def __truediv__(self, other) -> Value:  # a / b = a · b⁻¹
        return self * _as_value(other) ** -1

    # The reflected forms run when the left operand is a plain number: 2 * v, 1 - v, 0 + v (sum).
    def __radd__(self, other) -> Value:  # other + self
        return self + other

    def __rmul__(self, other) -> Value:  # other · self
        return self * other

    def __rsub__(self, other) -> Value:  # other − self
        return _as_value(other) + (-self)

    def __rtruediv__(self, other) -> Value:  # other / self
        return _as_value(other) * self**-1

    # -- backpropagation ------------------------------------------------------------------------
    def backward(self, gradient: float = 1.0) -> None:
        """Backpropagate from this Value: every node's ``grad`` gets d(gradient · self)/d node.

        Args:
            gradient: the upstream derivative seeded at this root (torch's ``gradient``
                argument); 1.0 gives the plain derivative of ``self``.

        Semantics when called more than once (the same as torch's ``retain_graph=True``):

        * **Leaves** (Values not computed from others: parameters, inputs, constants)
          *accumulate*: after two calls a leaf holds twice the gradient. This is what lets one
          sum gradients over several losses or mini-batches, and it is why training loops call
          ``zero_grad()`` before each backward.
        * **Interior** nodes hold the derivative of *this* pass only: they are reset to 0 at the
          start of every backward, because they are per-pass temporaries. (An engine that lets
          them accumulate too, as micrograd does, pushes the stale interior gradient down again
          on the second call: a leaf reached through k interior nodes below the root ends
          with (k + 2)× its gradient instead of 2×.)

        The order is a reverse topological order built iteratively, so graph depth is limited
        only by memory, never by Python's recursion limit.
        """
        order = topological_order(self)
        for node in order:
            if node._children:  # interior: the gradient of a previous pass is stale here
                node.grad = 0.0
        self.grad += float(gradient)
        for node in reversed(order):  # every node is finished before its children are visited
            for child, local in zip(node._children, node._local_grads):
                child.grad += local * node.grad  # chain rule; += sums over every path to child

    def zero_grad(self) -> None:
        """Set ``grad = 0`` on every node of the graph below (and including) this Value."""
        for node in topological_order(self):
            node.grad = 0.0

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g}{name})"


def _sigmoid(x: float) -> float:
    """σ(x) exponentiating only −|x| (see ``Value.sigmoid``)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _as_value(x) -> Value:
    """Wrap a plain number as a constant leaf ``Value`` (a Value passes through)."""
    return x if isinstance(x, Value) else Value(x)


def topological_order(root: Value) -> list[Value]:
    """Every node reachable from ``root``, children before parents (``root`` last).

    An iterative depth-first post-order: a node is appended only after all its children have
    been, using an explicit stack of ``(node, children_done)`` pairs instead of recursion.
    """
    order: list[Value] = []
    seen: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))  # comes back after everything pushed below is finished
        for child in node._children:
            if id(child) not in seen:
                stack.append((child, False))
    return order


def graph_size(root: Value) -> int:
    """Number of distinct nodes in the graph below ``root``."""
    return len(topological_order(root))


def leaves(root: Value) -> list[Value]:
    """The nodes with no children (parameters, inputs, constants)."""
    return [v for v in topological_order(root) if not v._children]
