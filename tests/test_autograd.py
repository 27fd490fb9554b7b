"""Unit tests of the scalar engine (numpy_nn.autograd) that need no torch.

The comparisons with torch live in parity/test_autograd_ops.py and
parity/test_gradient_triangle.py; here: hand-computed answers, one regression test per bug of
the engines this one replaces, the MLP and its training, the DOT/PNG output and the walk-through.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_nn.autograd import (
    MLP,
    Value,
    bce_with_logits_loss,
    classic_example,
    fit,
    from_numpy_nn,
    mse_loss,
    to_dot,
    topological_order,
)
from numpy_nn.layers import Dropout, Linear, Softmax, Tanh
from numpy_nn.module import Sequential

REPO = Path(__file__).resolve().parents[1]


# -- regressions: one per bug of the old engines ------------------------------------------------
def test_regression_gradients_accumulate_not_assign():
    # With `child.grad = ...` only the last path survives: a + a would give 1, x * x would give x.
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    x = Value(-1.5)
    (x * x).backward()
    assert x.grad == 2 * -1.5
    p, q = Value(2.0), Value(5.0)
    h = p * q  # used twice below
    (h * p + h).backward()  # d/dp = 2pq + q = 25,  d/dq = p² + p = 6
    assert (p.grad, q.grad) == (25.0, 6.0)


def test_regression_constants_have_a_backward():
    # Plain numbers become constant leaves, so mixing them in neither crashes nor loses gradient.
    x = Value(4.0)
    y = 2 * x + 1.5 * (x * 3) - 7 + x / 2  # dy/dx = 2 + 4.5 + 0.5 = 7
    y.backward()
    assert y.data == 2 * 4 + 1.5 * 12 - 7 + 2
    assert x.grad == 7.0


def test_regression_subtraction_backward():
    a, b = Value(1.0), Value(4.0)
    (a - b).backward()
    assert (a.grad, b.grad) == (1.0, -1.0)
    c = Value(0.25)
    (1 - c).backward()
    assert c.grad == -1.0
    d = Value(0.25)
    (d - d).backward()  # a path with +1 and one with −1: 0, not ±1
    assert d.grad == 0.0


def test_regression_builtin_sum():
    # sum() starts from the int 0: 0 + Value needs __radd__.
    vs = [Value(v) for v in (0.5, -2.0, 3.0)]
    s = sum(vs)
    assert isinstance(s, Value) and s.data == 1.5
    s.backward()
    assert [v.grad for v in vs] == [1.0, 1.0, 1.0]
    w = Value(2.0)
    t = sum(w * k for k in range(1, 5))  # a generator, w used four times
    t.backward()
    assert (t.data, w.grad) == (20.0, 10.0)


def test_regression_deep_graph_no_recursion():
    # 50,000 multiply-adds: 100,000+ nodes deep, far past Python's recursion limit.
    depth = 50_000
    assert depth > sys.getrecursionlimit()
    x = Value(1.0)
    y = x
    for _ in range(depth):
        y = y * 1.00001 + 0.0
    y.backward()
    assert math.isclose(x.grad, 1.00001**depth, rel_tol=1e-9)
    assert len(to_dot(y).splitlines()) > depth  # the DOT writer is iterative too
    del x, y  # freeing a deep chain must not overflow the C stack either


def test_regression_backward_twice():
    # Leaves accumulate (2x after two calls, like torch with retain_graph=True); interior nodes
    # hold this pass's derivative, so the second pass does not push a stale gradient down
    # (micrograd's engine gives a = 146 and b = -96 here: 4x along the paths through h*h and h).
    a, b = Value(2.0), Value(-3.0)
    h = a * b  # interior
    out = h * h + a  # d/da = 2hb + 1 = 37,  d/db = 2ha = -24,  d/dh = 2h = -12
    out.backward()
    first = (a.grad, b.grad, h.grad)
    assert first == (37.0, -24.0, -12.0)
    out.backward()
    assert (a.grad, b.grad) == (74.0, -48.0)
    assert h.grad == -12.0
    out.zero_grad()  # clears the whole graph; then one backward is the single-call answer again
    assert all(v.grad == 0.0 for v in topological_order(out))
    out.backward()
    assert (a.grad, b.grad, h.grad) == first


def test_backward_seed_gradient():
    a = Value(3.0)
    (a * a).backward(0.5)
    assert a.grad == 3.0


# -- hand-computed values and errors -------------------------------------------------------------
def test_tanh_neuron_by_hand():
    x1, x2, w1, w2 = Value(2.0), Value(0.0), Value(-3.0), Value(1.0)
    b = Value(6.881373587019543)
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    assert math.isclose(o.data, 1 / math.sqrt(2), rel_tol=1e-12)
    for v, expected in ((x1, -1.5), (w1, 1.0), (x2, 0.5), (w2, 0.0), (b, 0.5)):
        assert math.isclose(v.grad, expected, rel_tol=1e-12, abs_tol=1e-15)


def test_sigmoid_and_softplus_do_not_overflow():
    for x, s in ((1000.0, 1.0), (-1000.0, 0.0), (0.0, 0.5)):
        v = Value(x)
        y = v.sigmoid()
        y.backward()
        assert y.data == s and v.grad == s * (1 - s)
    assert Value(1000.0).softplus().data == 1000.0
    assert Value(-1000.0).softplus().data == 0.0
    assert Value(1e-300).log().data == pytest.approx(-690.7755278982137)


@pytest.mark.parametrize(
    "expr, error, match",
    [
        (lambda: Value(0.0).log(), ValueError, "positive"),
        (lambda: Value(-1.0).log(), ValueError, "positive"),
        (lambda: Value(-2.0) ** 0.5, ValueError, "fractional"),
        (lambda: Value(0.0) ** -1, ZeroDivisionError, "negative power"),
        (lambda: Value(1.0) / 0, ZeroDivisionError, "negative power"),
        (lambda: Value(710.0).exp(), OverflowError, "709"),
        (lambda: Value(1e200) ** 2, OverflowError, "overflows"),
        (lambda: Value(2.0) ** Value(3.0), TypeError, "plain number"),
        (lambda: Value("3"), TypeError, "real number"),
        (lambda: Value(Value(1.0)), TypeError, "not the Value"),
    ],
    ids=["log0", "log_negative", "negative_base_fractional_pow", "zero_negative_pow", "div_by_zero",
         "exp_overflow", "pow_overflow", "value_exponent", "string", "nested_value"],
)
def test_clear_errors(expr, error, match):
    with pytest.raises(error, match=match):
        expr()


def test_engine_gradients_vs_central_differences():
    model = MLP(3, [4, 4, 1], activation="relu", seed=3)
    xs, ys = [[0.5, -1.0, 2.0], [1.5, 0.2, -0.7], [-0.3, 0.8, 0.1]], [1.0, 0.0, 1.0]

    def loss():
        return bce_with_logits_loss([model(x) for x in xs], ys)

    loss().backward()
    eps = 1e-6
    for p in model.parameters():
        p0 = p.data
        p.data = p0 + eps
        up = loss().data
        p.data = p0 - eps
        down = loss().data
        p.data = p0
        assert abs((up - down) / (2 * eps) - p.grad) < 1e-8


# -- the tiny nn -------------------------------------------------------------------------------------
def test_classic_example_converges():
    model, losses = classic_example()  # 200 SGD steps, lr 0.1, seed 0
    assert losses[-1] < 1e-3
    assert all(b < a for a, b in zip(losses, losses[1:]))
    preds = [model(x).data for x in [[2, 3, -1], [3, -1, 0.5], [0.5, 1, 1], [1, 1, -1]]]
    np.testing.assert_allclose(preds, [1, -1, -1, 1], atol=0.05)


def test_fit_without_zero_grad_would_differ():
    # fit() zeroes the leaves each step; skipping it accumulates stale gradients and changes the run.
    a, b = MLP(3, [4, 1], seed=1), MLP(3, [4, 1], seed=1)
    fit(a, [[1.0, 2.0, 3.0]], [0.5], steps=3, lr=0.1)
    for _ in range(3):
        loss = mse_loss([b(x) for x in [[1.0, 2.0, 3.0]]], [0.5])
        loss.backward()  # no zero_grad
        for p in b.parameters():
            p.data -= 0.1 * p.grad
    assert any(pa.data != pb.data for pa, pb in zip(a.parameters(), b.parameters()))


def test_mlp_structure_seed_and_state():
    m = MLP(3, [4, 4, 1], seed=5)
    assert len(m.parameters()) == 3 * 4 + 4 + 4 * 4 + 4 + 4 + 1 == 41
    assert [p.data for p in m.parameters()] == [p.data for p in MLP(3, [4, 4, 1], seed=5).parameters()]
    assert [p.data for p in m.parameters()] != [p.data for p in MLP(3, [4, 4, 1], seed=6).parameters()]
    bound = 1 / math.sqrt(3)
    assert all(abs(w.data) <= bound for w in m.layers[0].parameters())
    state = m.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        "layers.0.weight": (4, 3), "layers.0.bias": (4,), "layers.1.weight": (4, 4), "layers.1.bias": (4,),
        "layers.2.weight": (1, 4), "layers.2.bias": (1,)}
    assert isinstance(m([1.0, 2.0, 3.0]), Value)  # one output: the Value itself
    assert len(MLP(3, [4, 2])([1.0, 2.0, 3.0])) == 2
    other = MLP(3, [4, 4, 1], seed=9)
    other.load_state_dict(state)
    assert other([0.1, 0.2, 0.3]).data == m([0.1, 0.2, 0.3]).data
    with pytest.raises(ValueError, match="size mismatch for layers.0.weight"):
        other.load_state_dict({**state, "layers.0.weight": np.zeros((3, 4))})
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({k: v for k, v in state.items() if k != "layers.2.bias"})
    m.zero_grad()
    assert all(p.grad == 0.0 for p in m.parameters())


def test_from_numpy_nn_layout_and_errors():
    net = Sequential(Linear(3, 2, dtype=np.float64), Tanh(), Linear(2, 1, dtype=np.float64))
    mlp = from_numpy_nn(net)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(mlp.state_dict()[k], v, err_msg=k)  # exact copy, weight (out, in)
    x = np.array([[0.3, -0.2, 1.1]])
    assert mlp(x[0].tolist()).data == pytest.approx(float(net(x)[0, 0]), rel=1e-14)
    assert mlp.layers[0].activation == "tanh" and mlp.layers[1].activation is None
    with pytest.raises(TypeError, match="Softmax"):
        from_numpy_nn(Sequential(Linear(3, 2), Softmax()))
    with pytest.raises(TypeError, match="Dropout"):
        from_numpy_nn(Sequential(Linear(3, 2), Dropout(0.5)))
    assert len(from_numpy_nn(Sequential(Linear(3, 2), Dropout(0.5)).eval()).layers) == 1


# -- pictures ------------------------------------------------------------------------------------
def test_to_dot_structure():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    c = a * b + a
    c.label = "c"
    c.backward()
    dot = to_dot(c)
    lines = dot.splitlines()
    assert lines[0] == "digraph autograd {" and lines[-1] == "}"
    boxes = re.findall(r"^  (v\d+) \[shape=box, label=\"(.*)\"\];$", dot, flags=re.M)
    ops = re.findall(r"^  (v\d+)_op \[shape=ellipse, label=\"(.*)\"\];$", dot, flags=re.M)
    edges = re.findall(r"^  (v\d+(?:_op)?) -> (v\d+(?:_op)?);$", dot, flags=re.M)
    assert len(boxes) == 4  # a, b, a*b, c
    assert sorted(op for _, op in ops) == ["*", "+"]
    assert len(edges) == 2 + 2 + 2  # op -> result for 2 ops, 2 children each
    labels = dict(boxes)
    assert "a | data 2 | grad -2" in labels.values()  # ∂c/∂a = b + 1
    assert "b | data -3 | grad 2" in labels.values()
    assert labels[f"v{len(boxes) - 1}"] == "c | data -4 | grad 1"  # the root comes last
    assert to_dot(c) == dot  # deterministic


def test_dot_escapes_quotes():
    assert '\\"' in to_dot(Value(1.0, label='say "hi"'))


# -- the walk-through and the no-torch promise ------------------------------------------------------
def test_walkthrough_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "numpy_nn.autograd", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "loss decreased from" in out and "gradient check passed" in out
    first, last = re.search(r"loss decreased from ([\d.e+-]+) to ([\d.e+-]+)", out).groups()
    assert float(last) < 1e-3 < float(first)
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("neuron.dot", "loss_graph.dot"):
        assert (tmp_path / name).read_text().startswith("digraph autograd {")


def test_walkthrough_and_engine_need_no_torch():
    # Make `import torch` fail, then import the package and run the walk-through.
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy_nn.autograd\n"
            "from numpy_nn.autograd.__main__ import main\n"
            "sys.exit(main(['--steps', '20']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "gradient check passed" in proc.stdout
