"""The scalar engine (numpy_nn.autograd.Value) against torch autograd, op by op, in float64.

One helper drives every case: the same inputs as a ``Value`` and as a 0-d float64 tensor, the
same expression (most are one lambda valid for both), one random upstream gradient, then the
value and every input's gradient are compared. Kinks and extreme arguments get their own cases.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_nn.autograd import Value
from parity.helpers import assert_close


def check(fn, *xs, torch_fn=None, seed: int = 0) -> tuple[Value, list[Value]]:
    """Evaluate ``fn`` on Values and ``torch_fn`` (default ``fn``) on tensors; compare value and grads."""
    vals = [Value(x) for x in xs]
    ts = [torch.tensor(float(x), dtype=torch.float64, requires_grad=True) for x in xs]
    out = fn(*vals)
    out_t = (torch_fn or fn)(*ts)
    assert_close(np.float64(out.data), out_t, "value", np.float64)
    upstream = float(np.random.default_rng(seed).uniform(0.5, 2.0))
    out.backward(upstream)
    out_t.backward(torch.tensor(upstream, dtype=torch.float64))
    for i, (v, t) in enumerate(zip(vals, ts)):
        expected = t.grad if t.grad is not None else torch.zeros((), dtype=torch.float64)
        assert_close(np.float64(v.grad), expected, f"grad of input {i}", np.float64)
    return out, vals


CASES = {
    # binary primitives and composites
    "add": (lambda a, b: a + b, 1.5, -2.0),
    "mul": (lambda a, b: a * b, 1.5, -2.0),
    "sub": (lambda a, b: a - b, 1.5, -2.0),
    "div": (lambda a, b: a / b, 1.5, -0.3),
    "div_small_denominator": (lambda a, b: a / b, 1.5, 1e-150),
    "neg": (lambda a: -a, 0.7),
    # pow with number exponents: integer on a negative base, negative, fractional, zero, at 0
    "pow_2_negative_base": (lambda a: a**2, -1.3),
    "pow_3_negative_base": (lambda a: a**3, -1.3),
    "pow_-1": (lambda a: a**-1, 0.7),
    "pow_-2.5": (lambda a: a**-2.5, 0.7),
    "pow_0.5": (lambda a: a**0.5, 2.0),
    "pow_1/3": (lambda a: a ** (1 / 3), 0.2),
    "pow_0": (lambda a: a**0, 1.7),
    "pow_0_at_0": (lambda a: a**0, 0.0),
    "pow_0.5_at_0_inf_slope": (lambda a: a**0.5, 0.0),
    "pow_1_at_0": (lambda a: a**1, 0.0),
    "pow_2_at_0": (lambda a: a**2, 0.0),
    "pow_-3_negative_base": (lambda a: a**-3, -0.8),
    # unary primitives, including awkward points
    "exp": (lambda a: a.exp(), 0.5),
    "exp_700": (lambda a: a.exp(), 700.0),
    "exp_-700": (lambda a: a.exp(), -700.0),
    "log": (lambda a: a.log(), 2.5),
    "log_1e-300": (lambda a: a.log(), 1e-300),
    "tanh": (lambda a: a.tanh(), -0.3),
    "tanh_saturated": (lambda a: a.tanh(), 25.0),
    "relu_positive": (lambda a: a.relu(), 1.3),
    "relu_negative": (lambda a: a.relu(), -1.3),
    "relu_at_0": (lambda a: a.relu(), 0.0),  # torch: gradient 0 at the kink
    "sigmoid": (lambda a: a.sigmoid(), 0.3),
    "sigmoid_at_0": (lambda a: a.sigmoid(), 0.0),
    "sigmoid_-30": (lambda a: a.sigmoid(), -30.0),
    "sigmoid_1000": (lambda a: a.sigmoid(), 1000.0),
    "sigmoid_-1000": (lambda a: a.sigmoid(), -1000.0),
    # softplus vs torch's (which switches to the identity above threshold 20: same to rounding)
    "softplus": (lambda a: a.softplus(), 0.3, F.softplus),
    "softplus_at_0": (lambda a: a.softplus(), 0.0, F.softplus),
    "softplus_-30": (lambda a: a.softplus(), -30.0, F.softplus),
    "softplus_800": (lambda a: a.softplus(), 800.0, F.softplus),
    "softplus_-800": (lambda a: a.softplus(), -800.0, F.softplus),
    # reflected forms: a plain number on the left
    "radd": (lambda a: 3 + a, 0.4),
    "rmul": (lambda a: 2 * a, 0.4),
    "rsub": (lambda a: 1 - a, 0.4),
    "rdiv": (lambda a: 2 / a, 0.4),
    "sub_number": (lambda a: a - 3, 0.4),
    "div_number": (lambda a: a / 4, 0.4),
    "builtin_sum": (lambda a, b, c: sum([a, b, c]), 0.4, -1.2, 2.0),
    # shared sub-expressions: every path into a node adds up
    "x*x": (lambda a: a * a, -1.7),
    "a+a": (lambda a: a + a, -1.7),
    "a*a*a": (lambda a: a * a * a, 0.9),
    "(a+b)(a-b)": (lambda a, b: (a + b) * (a - b), 0.9, -0.4),
    "reused_intermediate": (lambda a, b: (lambda c: c * c + c.tanh() * b)(a * b + 1), 0.9, -0.4),
    "composite": (lambda a, b: ((a * b).exp() + (b**2).log()) / (a - b).sigmoid() - (a / b).relu(), 0.6, -1.1),
}


def _case(name):
    fn, *rest = CASES[name]
    torch_fn = rest.pop() if callable(rest[-1]) else None
    return fn, rest, torch_fn


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_op_matches_torch(name):
    fn, xs, torch_fn = _case(name)
    check(fn, *xs, torch_fn=torch_fn, seed=len(name))


def test_deep_chain_10000_matches_torch():
    # y ← y·cᵢ + dᵢ ten thousand times: 20,000 nodes deep, far past the recursion limit.
    depth = 10_000
    rng = np.random.default_rng(0)
    c = (1 + rng.uniform(-1e-3, 1e-3, depth)).tolist()
    d = rng.uniform(-1e-3, 1e-3, depth).tolist()
    assert 2 * depth > sys.getrecursionlimit()

    def chain(x):
        for ci, di in zip(c, d):
            x = x * ci + di
        return x.tanh()

    check(chain, 0.3)


def test_backward_twice_matches_torch_retain_graph():
    # Leaves accumulate across calls exactly as torch's with retain_graph=True.
    def f(a, b):
        h = a * b + a  # interior node shared by two paths
        return h.tanh() * b + h * h

    a, b = Value(0.7), Value(-1.3)
    at, bt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.7, -1.3))
    out, out_t = f(a, b), f(at, bt)
    for g in (0.8, 1.7):
        out.backward(g)
        out_t.backward(torch.tensor(g, dtype=torch.float64), retain_graph=True)
        assert_close(np.float64(a.grad), at.grad, "a.grad", np.float64)
        assert_close(np.float64(b.grad), bt.grad, "b.grad", np.float64)

    # zero_grad() then one backward: the single-call gradient, as torch after grad.zero_()
    out.zero_grad()
    at.grad.zero_()
    bt.grad.zero_()
    out.backward(1.1)
    out_t.backward(torch.tensor(1.1, dtype=torch.float64))
    assert_close(np.float64(a.grad), at.grad, "a.grad after zero_grad", np.float64)
    assert_close(np.float64(b.grad), bt.grad, "b.grad after zero_grad", np.float64)
