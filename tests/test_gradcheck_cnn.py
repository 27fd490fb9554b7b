"""gradcheck (central differences, float64, random upstream gradient) on every convolutional
layer: Conv2d, the pools, BatchNorm in training and evaluation mode, the ResidualBlock and the CNN.
No torch here: these checks hold the NumPy track to its own forward."""

from __future__ import annotations

import numpy as np
import pytest

from numpy_nn.blocks import ResidualBlock
from numpy_nn.conv import Conv2d, col2im
from numpy_nn.gradcheck import GradcheckError, gradcheck, reseed_dropout
from numpy_nn.models import CNN
from numpy_nn.norm import BatchNorm1d, BatchNorm2d
from numpy_nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d


def distinct(shape, seed=0):
    """All entries distinct, at least 0.05 apart: no max-pool ties within ε of each other."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) - n / 2) * 0.05


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def random_affine(model, seed=3):
    """BatchNorm γ, β away from (1, 0), so every term of the backward is exercised."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)) and m.affine:
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = rng.uniform(-0.5, 0.5, m.bias.shape)
    return model


# id -> (module factory, input factory); every module float64
LAYERS = {
    "conv-k3-p1": (lambda: Conv2d(2, 3, 3, padding=1), lambda: randn((2, 2, 5, 5))),
    "conv-k2x3-s(2,1)-p(1,0)-d(1,2)": (
        lambda: Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        lambda: randn((2, 2, 6, 7)),
    ),
    "conv-k5-s2-nobias": (lambda: Conv2d(1, 2, 5, stride=2, padding=2, bias=False), lambda: randn((2, 1, 7, 6))),
    "conv-k1-s2": (lambda: Conv2d(3, 2, 1, stride=2), lambda: randn((2, 3, 5, 5))),
    "conv-groups2-k3-p1": (lambda: Conv2d(4, 2, 3, padding=1, groups=2), lambda: randn((2, 4, 4, 5))),
    "conv-depthwise-k3-s2": (lambda: Conv2d(3, 6, 3, stride=2, groups=3), lambda: randn((2, 3, 6, 5))),
    "conv-same-even-k(2,4)-d(2,1)": (
        lambda: Conv2d(2, 3, (2, 4), padding="same", dilation=(2, 1)),
        lambda: randn((2, 2, 5, 6)),
    ),
    "conv-reflect-p(1,2)": (lambda: Conv2d(2, 2, 3, padding=(1, 2), padding_mode="reflect"), lambda: randn((2, 2, 4, 5))),
    "conv-replicate-p2-s2": (lambda: Conv2d(2, 2, 3, stride=2, padding=2, padding_mode="replicate"),
                             lambda: randn((2, 2, 4, 5))),
    "conv-circular-same-k4": (lambda: Conv2d(2, 2, 4, padding="same", padding_mode="circular"),
                              lambda: randn((2, 2, 4, 5))),
    "conv-unbatched": (lambda: Conv2d(2, 3, 3, padding=1, groups=1), lambda: randn((2, 5, 4))),
    "maxpool-k2": (lambda: MaxPool2d(2), lambda: distinct((2, 2, 6, 6))),
    "maxpool-k3-s1-p1-overlap": (lambda: MaxPool2d(3, 1, 1), lambda: distinct((2, 2, 5, 5))),
    "maxpool-k3-s2-p1": (lambda: MaxPool2d(3, 2, 1), lambda: distinct((1, 2, 7, 6))),
    "avgpool-k2": (lambda: AvgPool2d(2), lambda: randn((2, 2, 6, 5))),
    "avgpool-k3-s2-p1": (lambda: AvgPool2d(3, 2, 1), lambda: randn((2, 2, 7, 6))),
    "adaptive-avgpool": (lambda: AdaptiveAvgPool2d(1), lambda: randn((2, 3, 4, 5))),
    "maxpool-unbatched": (lambda: MaxPool2d(3, 2, 1), lambda: distinct((2, 5, 6))),
    "avgpool-unbatched": (lambda: AvgPool2d(2), lambda: randn((2, 4, 5))),
    "adaptive-avgpool-unbatched": (lambda: AdaptiveAvgPool2d(1), lambda: randn((3, 4, 5))),
    "bn1d-NC-train": (lambda: random_affine(BatchNorm1d(3)), lambda: randn((5, 3))),
    "bn1d-NCL-train": (lambda: random_affine(BatchNorm1d(3)), lambda: randn((3, 3, 4))),
    "bn2d-train": (lambda: random_affine(BatchNorm2d(3)), lambda: randn((2, 3, 3, 4))),
    "bn2d-train-no-affine": (lambda: BatchNorm2d(3, affine=False), lambda: randn((2, 3, 3, 4))),
    "bn1d-train-no-affine": (lambda: BatchNorm1d(3, affine=False), lambda: randn((4, 3))),
    "bn1d-eval-no-affine": (lambda: _with_stats(BatchNorm1d(3, affine=False)).eval(), lambda: randn((4, 3, 2))),
    "bn2d-eval": (lambda: random_affine(_with_stats(BatchNorm2d(3))).eval(), lambda: randn((2, 3, 3, 4))),
    "bn2d-eval-no-running-stats": (
        lambda: random_affine(BatchNorm2d(3, track_running_stats=False)).eval(),
        lambda: randn((2, 3, 3, 4)),
    ),
    "residual-identity": (lambda: random_affine(ResidualBlock(3, 3)), lambda: randn((2, 3, 4, 4))),
    "residual-projection": (lambda: random_affine(ResidualBlock(2, 4, stride=2)), lambda: randn((2, 2, 5, 5))),
    "residual-eval": (lambda: random_affine(_with_stats(ResidualBlock(2, 3))).eval(), lambda: randn((2, 2, 4, 4))),
    "cnn-train": (lambda: random_affine(CNN(channels=(2, 3, 4))), lambda: randn((3, 1, 16, 16))),
}


def _with_stats(module):
    """Give every BatchNorm non-trivial running statistics (as after training)."""
    rng = np.random.default_rng(11)
    for m in module.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.running_mean[...] = rng.uniform(-1, 1, m.num_features)
            m.running_var[...] = rng.uniform(0.3, 2, m.num_features)
    return module


@pytest.mark.parametrize("make, make_x", list(LAYERS.values()), ids=list(LAYERS))
def test_gradcheck_layer(make, make_x):
    module = make().double()
    # composite models: 16 sampled entries per tensor keep the many full forwards cheap
    max_entries = 16 if isinstance(module, (ResidualBlock, CNN)) else 64
    assert gradcheck(module, make_x(), max_entries=max_entries)


def test_gradcheck_cnn_with_dropout_in_training_mode():
    model = random_affine(CNN(channels=(2, 3, 4), dropout=0.5)).double()
    assert gradcheck(model, randn((4, 1, 16, 16)), max_entries=12, before_forward=reseed_dropout(model))


def test_gradcheck_leaves_batchnorm_buffers_as_they_were():
    bn = BatchNorm2d(3).double()
    gradcheck(bn, randn((2, 3, 2, 2)))
    assert int(bn.num_batches_tracked) == 0 and np.all(bn.running_mean == 0)


class _BatchNormWithoutStatisticsPath(BatchNorm2d):
    """A classic mistake: treating μ and σ as constants in training mode (dx = γ·invstd·dy)."""

    def backward(self, grad_output):
        super().backward(grad_output)
        return grad_output * (self.weight.data * self._invstd).reshape(self._bshape)


class _ConvCroppingTheWrongCorner(Conv2d):
    """An off-by-padding col2im: the gradient of the padded input cropped at (0, 0), not (pH, pW)."""

    def backward(self, grad_output):
        super().backward(grad_output)  # the weight and bias gradients
        n, c, h, w = self._x_shape
        (ph, pw), k, s, d = self.padding, self.kernel_size, self.stride, self.dilation
        o = self.out_channels
        dcols = self.weight.data.reshape(o, -1).T @ grad_output.transpose(1, 0, 2, 3).reshape(o, -1)  # (K, N·L)
        dxp = col2im(dcols, (n, c, h + 2 * ph, w + 2 * pw), k, s, (0, 0), d)
        return dxp[:, :, :h, :w]


@pytest.mark.parametrize(
    "module, channels",
    [(_BatchNormWithoutStatisticsPath(3), 3), (_ConvCroppingTheWrongCorner(2, 2, 3, padding=1), 2)],
    ids=["bn-no-statistics-path", "conv-wrong-crop"],
)
def test_gradcheck_catches_wrong_backwards(module, channels):
    with pytest.raises(GradcheckError, match="input"):
        gradcheck(module.double(), randn((2, channels, 4, 4)))
