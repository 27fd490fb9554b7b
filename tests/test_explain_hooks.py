"""Module hooks with torch's names and semantics: order of calls, handle removal, replacements.

Each test runs the same scenario on a numpy_nn model and its torch_ref twin and compares what the
hooks saw (which modules, in which order, with which arrays).
"""

from __future__ import annotations

import numpy as np
import pytest

import numpy_nn as nnp
from numpy_nn import models

torch = pytest.importorskip("torch")
from torch_ref import models as tmodels  # noqa: E402
from torch_ref.exchange import torch_to_numpy  # noqa: E402


def twins(kind="cnn", seed=0):
    torch.manual_seed(seed)
    if kind == "cnn":
        t = tmodels.CNN(channels=(4, 6, 8), dtype=torch.float64)
        n = models.CNN(channels=(4, 6, 8), dtype=np.float64)
        shape = (2, 1, 16, 16)
    else:
        t = tmodels.MLP(in_features=16, hidden=(8, 6), dropout=0.0, dtype=torch.float64)
        n = models.MLP(in_features=16, hidden=(8, 6), dropout=0.0, dtype=np.float64)
        shape = (3, 16)
    torch_to_numpy(t, n)
    t.eval()
    n.eval()
    x = np.random.default_rng(seed).standard_normal(shape)
    return n, t, x


def to_np(a):
    return a.detach().numpy().copy() if isinstance(a, torch.Tensor) else np.array(a, copy=True)


def record_all(model, events, arrays=None):
    handles = []
    for name, mod in model.named_modules():
        def pre(m, args, name=name):
            events.append(("pre", name))

        def fwd(m, args, out, name=name):
            events.append(("fwd", name))
            if arrays is not None:
                arrays[("out", name)] = to_np(out)

        def bwd(m, gin, gout, name=name):
            events.append(("bwd", name))
            assert isinstance(gin, tuple) and isinstance(gout, tuple) and len(gout) == 1
            if arrays is not None:
                arrays[("gout", name)] = to_np(gout[0])
                if gin[0] is not None:
                    arrays[("gin", name)] = to_np(gin[0])

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(fwd),
                    mod.register_full_backward_hook(bwd)]
    return handles


def run_both(n, t, x, upstream_seed=1):
    y = n(x.copy())
    g = np.random.default_rng(upstream_seed).standard_normal(y.shape)
    gx = n.backward(g.copy())
    xt = torch.tensor(x, requires_grad=True)
    t(xt).backward(torch.from_numpy(g))
    return gx, xt.grad.numpy()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_hook_calls_come_in_torchs_order_with_torchs_arrays(kind):
    n, t, x = twins(kind)
    ev_n, ev_t, arr_n, arr_t = [], [], {}, {}
    record_all(n, ev_n, arr_n)
    record_all(t, ev_t, arr_t)
    run_both(n, t, x)
    assert ev_n == ev_t
    assert [e for e in ev_n if e[0] == "bwd"][-1] == ("bwd", "")  # the model's own hook comes last
    assert arr_n.keys() == arr_t.keys()
    for key in arr_t:
        np.testing.assert_allclose(arr_n[key], arr_t[key], rtol=1e-7, atol=1e-7, err_msg=str(key))


def test_removed_handles_stop_their_hooks_only():
    n, t, x = twins("cnn")

    def scenario(model, forward_backward):
        seen = []
        conv = model.features[0]
        h1 = conv.register_forward_hook(lambda m, a, o: seen.append("f1"))
        conv.register_forward_hook(lambda m, a, o: seen.append("f2"))
        hb = conv.register_full_backward_hook(lambda m, gi, go: seen.append("b1"))
        conv.register_full_backward_hook(lambda m, gi, go: seen.append("b2"))
        h1.remove()
        h1.remove()  # a second remove does nothing
        hb.remove()
        forward_backward()
        return seen

    seen_n = scenario(n, lambda: n.backward(np.ones_like(n(x.copy()))))
    seen_t = scenario(t, lambda: t(torch.tensor(x, requires_grad=True)).sum().backward())
    assert seen_n == seen_t == ["f2", "b2"]


def test_removed_handle_as_context_manager_and_no_hooks_left():
    n, _, x = twins("mlp")
    seen = []
    with n.layers[0].register_forward_hook(lambda m, a, o: seen.append(1)):
        n(x)
    n(x)
    assert seen == [1]
    assert not n.layers[0]._forward_hooks


def test_prepend_puts_a_hook_first_as_torch():
    n, t, x = twins("mlp")
    orders = []
    for model, inp in ((n, x), (t, torch.tensor(x))):
        seen = []
        model.register_forward_hook(lambda m, a, o, seen=seen: seen.append("a"))
        model.register_forward_hook(lambda m, a, o, seen=seen: seen.append("b"), prepend=True)
        model.register_forward_pre_hook(lambda m, a, seen=seen: seen.append("p2"))
        model.register_forward_pre_hook(lambda m, a, seen=seen: seen.append("p1"), prepend=True)
        model(inp)
        orders.append(seen)
    assert orders[0] == orders[1] == ["p1", "p2", "b", "a"]


def test_replacements_returned_by_hooks_are_used_as_torch_uses_them():
    n, t, x = twins("mlp")
    outputs = []
    for model, inp in ((n, x.copy()), (t, torch.tensor(x))):
        # pre-hook: a non-tuple return value becomes the new (only) argument;
        # forward hook: the returned value is what the caller sees
        h1 = model.layers[0].register_forward_pre_hook(lambda m, args: args[0] * 2.0)
        h2 = model.layers[-1].register_forward_hook(lambda m, args, out: out + 1.0)
        outputs.append(np.asarray(model(inp).detach() if model is t else model(inp)))
        h1.remove()
        h2.remove()
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-7, atol=1e-7)
    assert not np.allclose(n(x.copy()), outputs[0])  # without the hooks: something else

    # backward hook: the returned 1-tuple replaces grad_input, and the caller receives it
    for model in (n, t):
        model.layers[2].register_full_backward_hook(lambda m, gin, gout: (gin[0] * 3.0,))
    gx_n, gx_t = run_both(n, t, x)
    np.testing.assert_allclose(gx_n, gx_t, rtol=1e-7, atol=1e-7)


def test_a_forward_replacement_is_not_differentiated_in_numpy_nn():
    # numpy_nn has no autograd: backward is the derivative of forward alone, so an input scaled
    # by a pre-hook does not scale dL/dx (in torch it would). Documented, and pinned here.
    n, _, x = twins("mlp")
    g = np.ones((len(x), 1))
    n(x.copy())
    plain = n.backward(g)
    n.layers[0].register_forward_pre_hook(lambda m, args: args[0] * 2.0)
    n(x.copy() / 2.0)  # the same activations as the plain run
    np.testing.assert_allclose(n.backward(g), plain, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_skipped_input_gradient_reaches_the_hook_as_none_like_torch():
    n, t, x = twins("cnn")
    n.features[0].needs_input_grad = False
    got = {}
    n.features[0].register_full_backward_hook(lambda m, gi, go: got.setdefault("n", gi))
    t.features[0].register_full_backward_hook(lambda m, gi, go: got.setdefault("t", gi))
    n.backward(np.ones_like(n(x)))
    t(torch.tensor(x)).sum().backward()  # x without requires_grad, the parameters with
    assert got["n"] == (None,) and got["t"] == (None,)


def test_a_backward_hook_returning_the_wrong_arity_is_an_error():
    lin = nnp.Linear(3, 2, dtype=np.float64)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    lin(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but expected 1"):
        lin.backward(np.ones((1, 2)))


def test_named_modules_gives_torchs_dotted_names():
    n, t, _ = twins("cnn")
    assert [name for name, _ in n.named_modules()] == [name for name, _ in t.named_modules()]
    assert "features.7.shortcut.0" in dict(n.named_modules())
