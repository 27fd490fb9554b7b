"""Parity of the ResidualBlock and the CNN with torch_ref: outputs, every parameter gradient,
BatchNorm buffers, state_dict keys, and whole 20-step training runs (SGD with momentum, Adam)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpy_nn as nnp
from numpy_nn import blocks as np_blocks
from numpy_nn import models as np_models
from numpy_nn.layers import Dropout
from numpy_nn.losses import BCEWithLogitsLoss
from numpy_nn.optim import SGD, Adam
from parity.helpers import DTYPE_IDS, DTYPES, TORCH_DTYPE, assert_close, assert_layer_parity, make_input
from torch_ref import blocks as t_blocks
from torch_ref import models as t_models
from torch_ref.exchange import numpy_to_torch, torch_to_numpy
from torch_ref.layers import use_numpy_masks

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    nnp.manual_seed(0)


def randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """γ, β away from (1, 0) so a missing or swapped affine term shows in the gradients."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


# -- ResidualBlock ------------------------------------------------------------------------------
# id -> (in_channels, out_channels, stride, input shape)
BLOCKS = {
    "identity": (4, 4, 1, (2, 4, 6, 6)),
    "project-channels": (3, 5, 1, (2, 3, 6, 5)),
    "project-stride2": (4, 4, 2, (2, 4, 8, 8)),
    "project-both-odd": (3, 6, 2, (3, 3, 7, 9)),
}


@dtypes
@pytest.mark.parametrize("case", list(BLOCKS))
def test_residual_block(case, dtype):
    c_in, c_out, stride, shape = BLOCKS[case]
    np_block = np_blocks.ResidualBlock(c_in, c_out, stride)
    t_block = randomise_batchnorm(t_blocks.ResidualBlock(c_in, c_out, stride))
    assert_layer_parity(np_block, t_block, shape, dtype)
    is_identity = isinstance(np_block.shortcut, nnp.Identity)
    assert is_identity == (case == "identity") == isinstance(t_block.shortcut, torch.nn.Identity)
    np_block.eval()
    t_block.eval()
    t_block.zero_grad()
    assert_layer_parity(np_block, t_block, shape, dtype, seed=3, sync_weights=False)  # running statistics


# -- CNN: one forward and backward ----------------------------------------------------------------
# id -> (constructor kwargs, input shape)
CNNS = {
    "default-32x32": ({}, (4, 1, 32, 32)),
    "default-64x64": ({}, (2, 1, 64, 64)),
    "4-stages-odd-16x19": ({"in_channels": 2, "out_features": 3, "channels": (4, 6, 8, 10)}, (3, 2, 16, 19)),
    "2-stages": ({"channels": (4, 8)}, (3, 1, 16, 16)),
}


@dtypes
@pytest.mark.parametrize("case", list(CNNS))
def test_cnn_forward_and_every_gradient(case, dtype):
    kwargs, shape = CNNS[case]
    t_model = randomise_batchnorm(t_models.CNN(**kwargs, dtype=TORCH_DTYPE[dtype]))
    np_model = np_models.CNN(**kwargs, dtype=dtype)
    assert_layer_parity(np_model, t_model, shape, dtype)


def test_cnn_first_conv_without_input_grad():
    """The app's setting: the stem skips dL/dx (input is data); every parameter gradient still matches."""
    t_model = randomise_batchnorm(t_models.CNN(dtype=torch.float64))
    np_model = np_models.CNN(dtype=np.float64)
    np_model.features[0].needs_input_grad = False
    res = assert_layer_parity(np_model, t_model, (4, 1, 32, 32), np.float64, input_grad=False)
    assert res["gx_np"] is None


def test_cnn_with_dropout_uses_the_same_masks():
    """Training-mode dropout: both tracks draw masks from NumPy generators seeded alike."""
    t_model = randomise_batchnorm(t_models.CNN(dropout=0.5, dtype=torch.float64))
    use_numpy_masks(t_model, np.random.default_rng(5))
    np_model = np_models.CNN(dropout=0.5, dtype=np.float64)
    np_model.dropout.generator = np.random.default_rng(5)
    assert isinstance(np_model.dropout, Dropout)
    assert_layer_parity(np_model, t_model, (6, 1, 32, 32), np.float64)


@dtypes
def test_cnn_state_dict_keys_shapes_dtypes_and_exchange(dtype):
    np_model = np_models.CNN(dtype=dtype)
    t_model = t_models.CNN(dtype=TORCH_DTYPE[dtype])
    np_sd, t_sd = np_model.state_dict(), t_model.state_dict()
    assert list(np_sd) == list(t_sd)
    for k, v in t_sd.items():
        assert np_sd[k].shape == tuple(v.shape), k
        assert np_sd[k].dtype == v.numpy().dtype, k
    # numpy -> torch -> numpy is exact, and the two tracks then compute the same logits (eval)
    numpy_to_torch(np_model, t_model)
    for k, v in t_model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), np_sd[k], err_msg=k)
    x = make_input((3, 1, 64, 64), dtype)
    np_model.eval()
    t_model.eval()
    assert_close(np_model(x), t_model(torch.from_numpy(x)), "eval logits", dtype)


def test_cnn_init_and_shapes():
    model = np_models.CNN()
    # convolutions: kaiming_normal_(fan_out, relu), std = √2 / √(C_out·kH·kW), no bias (BatchNorm follows)
    for conv in (model.features[3], model.features[7].conv2):
        expected = np.sqrt(2 / (conv.weight.shape[0] * 9))
        assert abs(conv.weight.data.std() - expected) < 0.1 * expected
        assert conv.bias is None
    assert model(np.zeros((2, 1, 64, 64), np.float32)).shape == (2, 1)
    assert model(np.zeros((2, 1, 16, 16), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="expects input"):
        model(np.zeros((2, 64, 64), np.float32))
    with pytest.raises(ValueError, match="two stage widths"):
        np_models.CNN(channels=(8,))


# -- whole training runs ----------------------------------------------------------------------
OPTIMIZERS = {
    "sgd-momentum": (SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}),
    "adam": (Adam, torch.optim.Adam, {"lr": 3e-3}),
}


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_cnn_training_run_matches_torch_float64(opt):
    """20 steps of BCE training on 4 cycling batches: losses, every weight and every BatchNorm
    buffer equal torch's after every step; then the evaluation logits agree too."""
    dtype = np.float64
    np_opt_cls, t_opt_cls, kw = OPTIMIZERS[opt]
    t_model = t_models.CNN(channels=(4, 8, 16), dtype=torch.float64)
    np_model = torch_to_numpy(t_model, np_models.CNN(channels=(4, 8, 16), dtype=dtype))
    np_opt, t_opt = np_opt_cls(np_model.parameters(), **kw), t_opt_cls(t_model.parameters(), **kw)
    np_crit, t_crit = BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((8, 1, 32, 32)), (rng.random((8, 1)) < 0.5).astype(dtype)) for _ in range(4)]
    losses = []
    for step in range(20):
        x, y = data[step % len(data)]
        np_opt.zero_grad()
        loss = np_crit(np_model(x), y)
        np_model.backward(np_crit.backward())
        np_opt.step()
        t_opt.zero_grad()
        t_loss = t_crit(t_model(torch.from_numpy(x)), torch.from_numpy(y))
        t_loss.backward()
        t_opt.step()
        assert_close(np.float64(loss), t_loss, f"step {step}: loss", dtype)
        np_state = np_model.state_dict()
        for name, value in t_model.state_dict().items():
            assert_close(np_state[name], value, f"step {step}: {name}", dtype)
        losses.append(loss)
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses  # it learns: not a vacuous match
    np_model.eval()
    t_model.eval()
    x = data[0][0]
    assert_close(np_model(x), t_model(torch.from_numpy(x)), "eval logits after training", dtype)
