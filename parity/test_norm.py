"""Parity of BatchNorm1d / BatchNorm2d with torch: training and evaluation outputs and gradients,
running statistics after several steps (momentum, cumulative average), and every option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from numpy_nn.norm import BatchNorm1d, BatchNorm2d
from parity.helpers import DTYPE_IDS, DTYPES, TORCH_DTYPE, assert_close, assert_layer_parity, make_input, tol

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)

# id -> (numpy class, torch class, input shape)
KINDS = {
    "bn1d-NC": (BatchNorm1d, nn.BatchNorm1d, (6, 4)),
    "bn1d-NCL": (BatchNorm1d, nn.BatchNorm1d, (3, 4, 5)),
    "bn2d": (BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 6)),
    "bn2d-batch1": (BatchNorm2d, nn.BatchNorm2d, (1, 4, 3, 3)),
}
kinds = pytest.mark.parametrize("kind", list(KINDS))

# id -> constructor kwargs
OPTIONS = {
    "default": {},
    "momentum0.3-eps1e-3": {"momentum": 0.3, "eps": 1e-3},
    "cumulative": {"momentum": None},
    "no-affine": {"affine": False},
    "no-running-stats": {"track_running_stats": False},
}
options = pytest.mark.parametrize("opts", list(OPTIONS))


def make_pair(kind: str, opts: str, dtype):
    np_cls, t_cls, shape = KINDS[kind]
    kw = OPTIONS[opts]
    np_bn, t_bn = np_cls(shape[1], **kw), t_cls(shape[1], **kw, dtype=TORCH_DTYPE[dtype])
    if t_bn.affine:  # non-trivial γ, β so that a swapped or missing term shows
        with torch.no_grad():
            t_bn.weight.uniform_(0.5, 1.5)
            t_bn.bias.uniform_(-0.5, 0.5)
    return np_bn, t_bn, shape


@dtypes
@kinds
@options
def test_batchnorm_train_then_eval(kind, opts, dtype):
    """Five training steps on different batches (running statistics compared as buffers after
    each), then evaluation outputs and gradients with the running statistics so obtained."""
    np_bn, t_bn, shape = make_pair(kind, opts, dtype)
    torch.manual_seed(0)
    for step in range(5):
        t_bn.zero_grad()
        x = make_input(shape, dtype, seed=step, low=-1.0 + step, high=3.0 + step)  # drifting statistics
        assert_layer_parity(np_bn, t_bn, shape, dtype, x=x, seed=step, sync_weights=step == 0)
    if t_bn.track_running_stats:
        assert int(np_bn.num_batches_tracked) == int(t_bn.num_batches_tracked) == 5
        assert np_bn.num_batches_tracked.dtype == np.int64
        assert not np.allclose(np_bn.running_mean, 0)  # the statistics did move
    np_bn.eval()
    t_bn.eval()
    t_bn.zero_grad()
    assert_layer_parity(np_bn, t_bn, shape, dtype, seed=7, sync_weights=False)


@dtypes
@pytest.mark.parametrize("kind", ["bn1d-NC", "bn2d"])
def test_batchnorm_eval_with_loaded_statistics(kind, dtype):
    """Evaluation with arbitrary loaded running statistics (the weights of a trained checkpoint)."""
    np_bn, t_bn, shape = make_pair(kind, "default", dtype)
    with torch.no_grad():
        t_bn.running_mean.uniform_(-1, 1)
        t_bn.running_var.uniform_(0.2, 3)
    t_bn.num_batches_tracked.fill_(12)
    np_bn.eval()
    t_bn.eval()
    assert_layer_parity(np_bn, t_bn, shape, dtype)
    assert int(np_bn.num_batches_tracked) == 12  # evaluation does not count batches


def test_batchnorm_state_dict_matches_torch():
    for opts, kw in OPTIONS.items():
        np_sd, t_sd = BatchNorm2d(3, **kw).state_dict(), nn.BatchNorm2d(3, **kw).state_dict()
        assert list(np_sd) == list(t_sd), opts
        for k, v in t_sd.items():
            assert_close(np_sd[k], v, f"{opts}: initial {k}", np.float32)


def test_batchnorm_large_offset_float32():
    """float32 batch statistics on data with a large mean (2-pass variance, no catastrophic
    cancellation): still within float32 parity tolerance."""
    np_bn, t_bn, shape = make_pair("bn2d", "default", np.float32)
    x = make_input(shape, np.float32, low=99.0, high=101.0)
    assert_layer_parity(np_bn, t_bn, shape, np.float32, x=x)


def test_batchnorm_rejects_bad_input():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(np.ones((1, 3), np.float32))
    BatchNorm1d(3).eval()(np.ones((1, 3), np.float32))  # fine in evaluation, as torch
    with pytest.raises(ValueError, match="expected 4D input"):
        BatchNorm2d(3)(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        BatchNorm2d(3)(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        BatchNorm2d(3)(np.ones((2, 3, 2, 2), np.float64))


# -- torch's edge cases (issue 10 §7) --------------------------------------------------------------

EMPTY = {
    "bn1d-(0,C)": (BatchNorm1d, nn.BatchNorm1d, (0, 4)),
    "bn1d-(0,C,L)": (BatchNorm1d, nn.BatchNorm1d, (0, 4, 5)),
    "bn1d-(N,C,0)": (BatchNorm1d, nn.BatchNorm1d, (3, 4, 0)),
    "bn2d-(0,C,H,W)": (BatchNorm2d, nn.BatchNorm2d, (0, 4, 3, 2)),
}


@dtypes
@options
@pytest.mark.parametrize("kind", list(EMPTY))
def test_batchnorm_empty_batch_in_training(kind, opts, dtype):
    """The reproduction raised. torch: an empty output and input gradient, dγ = dβ = 0, running
    statistics unchanged but the batch counted (num_batches_tracked + 1, which changes the next
    cumulative average); the next real batch then matches too."""
    np_cls, t_cls, shape = EMPTY[kind]
    kw = OPTIONS[opts]
    np_bn, t_bn = np_cls(4, **kw), t_cls(4, **kw, dtype=TORCH_DTYPE[dtype])
    if t_bn.track_running_stats:
        with torch.no_grad():
            t_bn.running_mean.uniform_(-1, 1)
            t_bn.running_var.uniform_(0.5, 2)
    res = assert_layer_parity(np_bn, t_bn, shape, dtype)  # buffers compared too
    assert res["y_np"].shape == shape and res["gx_np"].shape == shape
    if t_bn.track_running_stats:
        assert int(np_bn.num_batches_tracked) == int(t_bn.num_batches_tracked) == 1
    full = (3,) + shape[1:2] + tuple(s or 2 for s in shape[2:])
    t_bn.zero_grad()
    np_bn.zero_grad()
    assert_layer_parity(np_bn, t_bn, full, dtype, seed=4, sync_weights=False)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batchnorm_one_value_per_channel_is_torchs_error(shape):
    """Exactly one value per channel (M = 1) in training is the only size torch refuses; same message."""
    np_cls, t_cls = (BatchNorm2d, nn.BatchNorm2d) if len(shape) == 4 else (BatchNorm1d, nn.BatchNorm1d)
    with pytest.raises(ValueError) as t_err:
        t_cls(3)(torch.zeros(shape))
    with pytest.raises(ValueError) as np_err:
        np_cls(3)(np.zeros(shape, np.float32))
    prefix = "Expected more than 1 value per channel when training, got input size"
    assert str(t_err.value).startswith(prefix) and str(np_err.value) == f"{prefix} {shape}"


@dtypes
@pytest.mark.parametrize("kind", ["bn1d-NC", "bn1d-NCL", "bn2d"])
@pytest.mark.parametrize("track", [True, False], ids=["running-stats", "batch-stats-only"])
def test_batchnorm_without_affine_eval_and_state(kind, track, dtype):
    """affine=False: no parameters (state_dict as torch's), evaluation outputs and gradients."""
    np_cls, t_cls, shape = KINDS[kind]
    np_bn, t_bn = np_cls(4, affine=False, track_running_stats=track), t_cls(4, affine=False, track_running_stats=track)
    assert list(np_bn.parameters()) == [] and list(np_bn.state_dict()) == list(t_bn.state_dict())
    assert_layer_parity(np_bn, t_bn, shape, dtype)
    np_bn.eval()
    t_bn.eval()
    assert_layer_parity(np_bn, t_bn, shape, dtype, seed=2, sync_weights=False)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_float32_sums_over_many_values(train):
    """float32 with 16·56·56 values per channel (DenseNet's first block at batch 16): the output and
    dγ, dβ within the parity float32 tolerance of the float64 computation (every per-channel sum
    accumulates in float64). Against float64, not torch: torch's float32 dγ is itself ~1e-4 off
    at this size, beyond its own tolerance."""
    rng = np.random.default_rng(0)
    bn, shape = BatchNorm2d(8), (16, 8, 56, 56)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 8)
    bn.bias.data[...] = rng.uniform(-0.5, 0.5, 8)
    bn.running_mean[...] = rng.uniform(-1, 1, 8)
    bn.running_var[...] = rng.uniform(0.5, 2, 8)
    if not train:
        bn.eval()
    x = make_input(shape, np.float32, low=1.0, high=5.0)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = bn(x)
    bn.backward(dy)
    x64, c = x.astype(np.float64), (None, slice(None), None, None)
    if train:
        mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    else:
        mean, var = bn.running_mean.astype(np.float64), bn.running_var.astype(np.float64)
    xhat = (x64 - mean[c]) / np.sqrt(var + bn.eps)[c]
    tight = tol(np.float32)  # the parity suite's float32 tolerance
    np.testing.assert_allclose(y, xhat * bn.weight.data[c] + bn.bias.data[c], **tight)
    np.testing.assert_allclose(bn.bias.grad, dy.sum(axis=(0, 2, 3), dtype=np.float64), **tight)
    np.testing.assert_allclose(bn.weight.grad, (dy * xhat).sum(axis=(0, 2, 3)), **tight)
