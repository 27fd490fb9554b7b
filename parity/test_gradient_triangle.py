"""The gradient triangle: three independent ways to get the same gradients, in float64.

For one small MLP (3 -> 4 -> 4 -> 1) with the same weights and inputs:

* the scalar engine (``numpy_nn.autograd``: one ``Value`` per number, chain rule per edge),
* numpy_nn's hand-written backward (``Linear/Tanh/ReLU.backward``, ``MSELoss/BCEWithLogitsLoss``),
* torch autograd,

must give the same loss, parameter gradients and input gradients to 1e-10. The weights start in
the numpy_nn model and are copied exactly into the other two (``from_numpy_nn``, ``numpy_to_torch``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpy_nn.autograd import Value, bce_with_logits_loss, from_numpy_nn, mse_loss
from numpy_nn.layers import Linear, ReLU, Tanh
from numpy_nn.losses import BCEWithLogitsLoss, MSELoss
from numpy_nn.models import MLP as NumpyMLP
from numpy_nn.module import Sequential
from parity.helpers import assert_close
from torch_ref.exchange import numpy_to_torch
from torch_ref.models import MLP as TorchMLP

# The issue asks for 1e-10: scale 1e-3 of the float64 tolerance (1e-7). Three float64 evaluations
# of a 41-parameter network differ only by a few roundings, so this is not tight.
SCALE = 1e-3
N = 8  # samples

ACTS = {"tanh": (Tanh, torch.nn.Tanh), "relu": (ReLU, torch.nn.ReLU)}
LOSSES = {
    "mse": (MSELoss, torch.nn.MSELoss, mse_loss),
    "bce_logits": (BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, bce_with_logits_loss),
}


def _models(activation: str, seed: int):
    act_np, act_t = ACTS[activation]
    f64 = np.float64
    net = Sequential(Linear(3, 4, dtype=f64), act_np(), Linear(4, 4, dtype=f64), act_np(), Linear(4, 1, dtype=f64))
    rng = np.random.default_rng(seed)  # weights of our own, not the default init
    net.load_state_dict({k: rng.uniform(-1.0, 1.0, v.shape) for k, v in net.state_dict().items()})
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), act_t(), torch.nn.Linear(4, 4), act_t(), torch.nn.Linear(4, 1))
    numpy_to_torch(net, tnet.double())
    return net, tnet


def _data(loss: str, seed: int):
    rng = np.random.default_rng(seed + 100)
    x = rng.uniform(-2.0, 2.0, (N, 3))
    y = rng.standard_normal((N, 1)) if loss == "mse" else rng.integers(0, 2, (N, 1)).astype(np.float64)
    return x, y


def triangle(net, tnet, x: np.ndarray, y: np.ndarray, loss: str) -> None:
    crit_np_cls, crit_t_cls, crit_ad = LOSSES[loss]
    mlp = from_numpy_nn(net)

    # 1. scalar engine: every input number is a Value too, to get d loss / d x
    xs = [[Value(v) for v in row] for row in x]
    loss_ad = crit_ad([mlp(row) for row in xs], y[:, 0].tolist())
    loss_ad.backward()
    gx_ad = np.array([[v.grad for v in row] for row in xs])
    grads_ad = mlp.grad_dict()

    # 2. numpy_nn, hand-written backward
    crit_np = crit_np_cls()
    loss_np = crit_np(net(x.copy()), y.copy())
    net.zero_grad()
    gx_np = net.backward(crit_np.backward())
    grads_np = {name: p.grad for name, p in net.named_parameters()}

    # 3. torch autograd
    xt = torch.tensor(x, requires_grad=True)
    loss_t = crit_t_cls()(tnet(xt), torch.from_numpy(y))
    loss_t.backward()
    grads_t = {name: p.grad for name, p in tnet.named_parameters()}

    assert list(grads_ad) == list(grads_np) == list(grads_t), "parameter names differ"
    for name, a, b, c in [("loss", np.float64(loss_ad.data), np.float64(loss_np), loss_t),
                          ("grad_input", gx_ad, gx_np, xt.grad)]:
        assert_close(a, c, f"{name}: engine vs torch", np.float64, SCALE)
        assert_close(b, c, f"{name}: numpy_nn vs torch", np.float64, SCALE)
        assert_close(a, b, f"{name}: engine vs numpy_nn", np.float64, SCALE)
    for name in grads_t:
        assert_close(grads_ad[name], grads_t[name], f"grad {name}: engine vs torch", np.float64, SCALE)
        assert_close(grads_np[name], grads_t[name], f"grad {name}: numpy_nn vs torch", np.float64, SCALE)
        assert_close(grads_ad[name], grads_np[name], f"grad {name}: engine vs numpy_nn", np.float64, SCALE)


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTS))
def test_gradient_triangle(activation, loss):
    seed = 3 * list(ACTS).index(activation) + list(LOSSES).index(loss)
    net, tnet = _models(activation, seed)
    x, y = _data(loss, seed)
    triangle(net, tnet, x, y, loss)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_gradient_triangle_project_mlp(loss):
    # The project's own MLP classes (names layers.0 / layers.2 / layers.4, ReLU, no dropout).
    net = NumpyMLP(in_features=3, hidden=(4, 4), out_features=1, dropout=0.0, dtype=np.float64)
    tnet = TorchMLP(in_features=3, hidden=(4, 4), out_features=1, dropout=0.0, dtype=torch.float64)
    rng = np.random.default_rng(7)
    net.load_state_dict({k: rng.uniform(-1.0, 1.0, v.shape) for k, v in net.state_dict().items()})
    numpy_to_torch(net, tnet)
    x, y = _data(loss, 7)
    assert list(from_numpy_nn(net).state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.2.weight",
                                                     "layers.2.bias", "layers.4.weight", "layers.4.bias"]
    triangle(net, tnet, x, y, loss)
