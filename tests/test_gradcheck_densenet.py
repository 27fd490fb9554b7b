"""gradcheck (central differences, float64, random upstream gradient) on DenseNet's pieces: the
dense layer, the dense block (its concatenation-by-buffer backward), the transition and a whole
small DenseNet, in training and evaluation mode, with dropout masks fixed. No torch here."""

from __future__ import annotations

import numpy as np
import pytest

from numpy_nn.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition
from numpy_nn.gradcheck import gradcheck, reseed_dropout
from numpy_nn.norm import BatchNorm2d


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def random_affine(model, seed=3):
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, m.bias.shape)
            m.running_mean[...] = rng.uniform(-0.5, 0.5, m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.running_var.shape)
    return model


PIECES = {
    "dense-layer": (lambda: _DenseLayer(5, 3, 2, 0.0, dtype=np.float64), (2, 5, 4, 4)),
    "dense-block-3-layers": (lambda: _DenseBlock(3, 4, 2, 3, 0.0, dtype=np.float64), (2, 4, 4, 3)),
    "transition-odd-size": (lambda: _Transition(6, 3, dtype=np.float64), (2, 6, 5, 7)),
    "densenet-2-blocks": (lambda: DenseNet(3, (2, 2), 4, 2, num_classes=2, dtype=np.float64), (2, 3, 16, 16)),
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", list(PIECES))
def test_gradcheck_densenet_pieces(case, mode):
    make, shape = PIECES[case]
    module = random_affine(make())
    module.train(mode == "train")
    assert gradcheck(module, randn(shape), max_entries=24)


def test_gradcheck_dense_block_with_dropout():
    block = random_affine(_DenseBlock(2, 3, 2, 2, 0.3, dtype=np.float64))
    assert gradcheck(block, randn((2, 3, 4, 4)), max_entries=24, before_forward=reseed_dropout(block, 1))


def test_block_gradient_is_the_sum_over_later_layers():
    """A wrong accumulation (overwriting instead of adding into the shared gradient buffer) is
    caught: zero the upstream gradient of the block output except x₀'s channels and check."""
    block = random_affine(_DenseBlock(3, 2, 2, 2, 0.0, dtype=np.float64))
    x = randn((2, 2, 3, 3))
    out = block(x)
    u = np.zeros_like(out)
    u[:, 2:4] = randn((2, 2, 3, 3), seed=1)  # only x₁ (layer 1's output) is seen by the loss directly
    assert gradcheck((lambda xx: (block(xx) * u).sum(keepdims=True).reshape(1), lambda g, xx: (block(xx), block.backward(u * g[0]))[1]), x)
