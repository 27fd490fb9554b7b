"""gradcheck passes on every hand-written layer and loss (float64), and catches wrong backwards."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_nn as nnp
from numpy_nn import losses
from numpy_nn.gradcheck import GradcheckError, gradcheck, reseed_dropout
from numpy_nn.models import MLP
from numpy_nn.module import Module, Parameter


def with_random_biases(model, seed=7):
    """Non-zero biases: with the MLP's zero-initialised biases, a row whose inputs are all dropped
    (or all cut by a ReLU) has a pre-activation of exactly 0, the ReLU kink."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data[...] = rng.uniform(0.2, 0.5, p.shape) * rng.choice([-1, 1], p.shape)
    return model


def away_from_zero(shape, seed=0):
    """Standard normal entries pushed at least 0.1 away from 0 (the ReLU kink)."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.sign(x) * (np.abs(x) + 0.1)


def binary(shape, seed=1):
    return (np.random.default_rng(seed).uniform(size=shape) < 0.5).astype(np.float64)


# -- every layer ------------------------------------------------------------------------------
LAYERS = {
    "linear": (lambda: nnp.Linear(4, 3), (5, 4)),
    "linear-nobias": (lambda: nnp.Linear(4, 3, bias=False), (5, 4)),
    "linear-3d": (lambda: nnp.Linear(4, 2), (2, 3, 4)),
    "relu": (nnp.ReLU, (5, 4)),
    "leaky": (lambda: nnp.LeakyReLU(0.1), (5, 4)),
    "sigmoid": (nnp.Sigmoid, (5, 4)),
    "tanh": (nnp.Tanh, (5, 4)),
    "softmax-1": (lambda: nnp.Softmax(dim=-1), (5, 4)),
    "softmax0": (lambda: nnp.Softmax(dim=0), (5, 4)),
    "flatten": (nnp.Flatten, (2, 3, 2, 2)),
    "identity": (nnp.Identity, (5, 4)),
    "dropout-eval": (lambda: nnp.Dropout(0.5).eval(), (5, 4)),
    "sequential": (
        lambda: nnp.Sequential(nnp.Linear(4, 6), nnp.Tanh(), nnp.Linear(6, 3), nnp.Softmax(dim=1)),
        (5, 4),
    ),
    "mlp-eval": (
        lambda: with_random_biases(MLP(in_features=6, hidden=(5, 4), out_features=2, dropout=0.3).eval()),
        (3, 1, 2, 3),
    ),
}


@pytest.mark.parametrize("make, shape", list(LAYERS.values()), ids=list(LAYERS))
def test_layer(make, shape):
    assert gradcheck(make().double(), away_from_zero(shape))


def test_dropout_train_mode_with_fixed_masks():
    drop = nnp.Dropout(0.4)
    assert gradcheck(drop, away_from_zero((6, 5)), before_forward=reseed_dropout(drop))


def test_mlp_train_mode_with_fixed_masks():
    mlp = with_random_biases(MLP(in_features=6, hidden=(5, 4), out_features=2, dropout=0.3).double())
    assert gradcheck(mlp, away_from_zero((4, 6)), before_forward=reseed_dropout(mlp, seed=3))


def test_dropout_without_fixed_masks_fails():
    # Fresh masks on every forward make the function random: the checker must not pass it.
    drop = nnp.Dropout(0.5, generator=np.random.default_rng(0))
    with pytest.raises(GradcheckError):
        gradcheck(drop, away_from_zero((6, 5)))


def test_plain_function_pair():
    assert gradcheck((np.tanh, lambda u, x: u * (1 - np.tanh(x) ** 2)), away_from_zero((3, 4)))
    with pytest.raises(GradcheckError, match="input"):
        gradcheck((np.tanh, lambda u, x: u * (1 - np.tanh(x))), away_from_zero((3, 4)))


# -- every loss ----------------------------------------------------------------------------------
LOSSES = {
    "bce": (lambda: losses.BCEWithLogitsLoss(), (6, 1), binary),
    "bce-sum-pw": (lambda: losses.BCEWithLogitsLoss(pos_weight=[2.0, 0.5], reduction="sum"), (4, 2), binary),
    "bce-none-smooth": (lambda: losses.BCEWithLogitsLoss(reduction="none", label_smoothing=0.1), (4, 2), binary),
    "bce-weight-soft": (
        lambda: losses.BCEWithLogitsLoss(pos_weight=3.0, weight=[0.5, 2.0], label_smoothing=0.2),
        (3, 2),
        lambda shape: np.random.default_rng(2).uniform(size=shape),
    ),
    "mse": (lambda: losses.MSELoss(), (4, 3), lambda shape: np.random.default_rng(3).standard_normal(shape)),
    "mse-none": (lambda: losses.MSELoss("none"), (4, 3), lambda shape: np.random.default_rng(3).standard_normal(shape)),
    "ce": (lambda: losses.CrossEntropyLoss(), (5, 4), lambda shape: np.array([0, 3, 1, 2, 3])),
    "ce-weight-smooth-ignore": (
        lambda: losses.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], label_smoothing=0.1),
        (5, 4),
        lambda shape: np.array([0, -100, 1, 2, 3]),
    ),
    "ce-spatial-none": (
        lambda: losses.CrossEntropyLoss(reduction="none", label_smoothing=0.2),
        (2, 3, 4),
        lambda shape: np.random.default_rng(4).integers(0, 3, size=(2, 4)),
    ),
    "ce-probs": (
        lambda: losses.CrossEntropyLoss(weight=[1.0, 2.0, 0.5], label_smoothing=0.1, reduction="sum"),
        (4, 3),
        lambda shape: np.random.default_rng(5).dirichlet(np.ones(3), size=4),
    ),
}


@pytest.mark.parametrize("make, shape, target", list(LOSSES.values()), ids=list(LOSSES))
def test_loss(make, shape, target):
    assert gradcheck(make(), (away_from_zero(shape), target(shape)))


# -- the checker can fail ---------------------------------------------------------------------
class WrongWeightGradLinear(nnp.Linear):
    def backward(self, grad_output):
        gx = super().backward(grad_output)
        self.weight.grad *= 1.01  # 1% off
        return gx


class WrongInputGradTanh(nnp.Tanh):
    def backward(self, grad_output):
        return grad_output * (1 - self._y)  # forgot to square


class UnscaledMeanBCE(losses.BCEWithLogitsLoss):
    def backward(self, grad_output=None):
        return super().backward(grad_output) * self._cache[0].size  # forgot the 1/N of "mean"


def test_wrong_parameter_gradient_is_caught():
    with pytest.raises(GradcheckError, match=r"param weight\[\d+, \d+\]: analytic .* numeric"):
        gradcheck(WrongWeightGradLinear(4, 3).double(), away_from_zero((5, 4)))


def test_wrong_input_gradient_is_caught():
    with pytest.raises(GradcheckError, match=r"input\[\d+, \d+\]"):
        gradcheck(WrongInputGradTanh(), away_from_zero((5, 4)))


def test_wrong_loss_gradient_is_caught():
    with pytest.raises(GradcheckError, match="input"):
        gradcheck(UnscaledMeanBCE(), (away_from_zero((6, 1)), binary((6, 1))))


def test_wrong_gradient_inside_a_model_is_caught_by_name():
    model = nnp.Sequential(nnp.Linear(4, 5), nnp.ReLU(), WrongWeightGradLinear(5, 2)).double()
    with pytest.raises(GradcheckError, match=r"param 2\.weight"):
        gradcheck(model, away_from_zero((3, 4)))


def test_sampled_entries_still_catch_a_systematic_error():
    layer = WrongWeightGradLinear(40, 30).double()  # 1200 weight entries, 8 checked
    with pytest.raises(GradcheckError, match="param weight"):
        gradcheck(layer, away_from_zero((3, 40)), max_entries=8)


class CenterBatch(Module):
    """y = x − mean_n(x): every output depends on every batch entry (as BatchNorm in training)."""

    def __init__(self, couple_in_backward: bool = True):
        super().__init__()
        self.couple = couple_in_backward

    def forward(self, x):
        return x - x.mean(axis=0, keepdims=True)

    def backward(self, grad_output):
        # dx_n = dy_n − (1/N) Σ_m dy_m
        if not self.couple:
            return grad_output  # wrong: ignores the path through the batch mean
        return grad_output - grad_output.mean(axis=0, keepdims=True)


def test_batch_coupled_module():
    assert gradcheck(CenterBatch(), away_from_zero((4, 3)))
    with pytest.raises(GradcheckError, match="input"):
        gradcheck(CenterBatch(couple_in_backward=False), away_from_zero((4, 3)))


def test_backward_of_wrong_shape_is_reported():
    with pytest.raises(GradcheckError, match="shape"):
        gradcheck((np.tanh, lambda u, x: u[:1]), away_from_zero((3, 4)))


def test_float32_is_refused():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(nnp.Linear(3, 2).double(), np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="parameter weight"):
        gradcheck(nnp.Linear(3, 2), np.ones((2, 3)))


# -- the checker leaves the module as it found it ----------------------------------------------
class CountingBuffer(Module):
    """Scales by a parameter and counts forwards in a buffer (as BatchNorm's running stats change)."""

    def __init__(self):
        super().__init__()
        self.scale = Parameter(np.array([1.5, -0.5]))
        self.register_buffer("calls", np.zeros(()))

    def forward(self, x):
        self.calls = self.calls + 1
        return x * self.scale.data

    def backward(self, grad_output):
        self.scale.accumulate_grad((grad_output * self._x_for_grad).sum(axis=0))
        return grad_output * self.scale.data

    def __call__(self, x):
        self._x_for_grad = x
        return self.forward(x)


def test_state_is_restored():
    m = CountingBuffer()
    m.scale.grad = np.array([7.0, 8.0])
    before = m.scale.data.copy()
    assert gradcheck(m, away_from_zero((3, 2)), max_entries=None)
    np.testing.assert_array_equal(m.scale.data, before)
    np.testing.assert_array_equal(m.scale.grad, [7.0, 8.0])
    assert m.calls == 0
    assert dict(m.named_buffers())["calls"] == 0
