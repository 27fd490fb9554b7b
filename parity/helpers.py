"""The one comparison helper every parity test uses, and the one tolerance table.

Base tolerances are torch.testing.assert_close's defaults per dtype. float64 is compared at
exactly those; float32 at most 5x them (different BLAS kernels sum in different orders).
Widen only at a call site that needs it, with a comment saying why.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from torch_ref.exchange import torch_to_numpy

# torch.testing.assert_close defaults: (rtol, atol)
TORCH_DEFAULT_TOL = {np.float64: (1e-7, 1e-7), np.float32: (1.3e-6, 1e-5)}
# What the parity suite demands: float64 exact defaults, float32 at 5x.
TOL = {np.float64: (1e-7, 1e-7), np.float32: (5 * 1.3e-6, 5 * 1e-5)}

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]

TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def tol(dtype, scale: float = 1.0) -> dict:
    rtol, atol = TOL[np.dtype(dtype).type]
    return {"rtol": rtol * scale, "atol": atol * scale}


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def assert_close(actual: np.ndarray, expected, name: str, dtype=None, scale: float = 1.0) -> None:
    """Compare a NumPy result with torch's: shape, dtype, then values. ``name`` says which
    quantity failed (``output``, ``grad_input``, ``grad layers.0.weight``, ``exp_avg[3]``...)."""
    if isinstance(expected, torch.Tensor):
        expected = to_numpy(expected)
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != torch {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != torch {expected.dtype}"
    dtype = np.dtype(dtype or expected.dtype).type
    if not np.issubdtype(np.dtype(dtype), np.floating):
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return
    np.testing.assert_allclose(actual, expected, err_msg=name, **tol(dtype, scale))


def make_input(shape, dtype, seed: int = 0, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)


def assert_layer_parity(
    np_module,
    torch_module: torch.nn.Module,
    input_shape: tuple[int, ...],
    dtype=np.float64,
    x: np.ndarray | None = None,
    seed: int = 0,
    scale: float = 1.0,
    sync_weights: bool = True,
    input_grad: bool = True,
) -> dict:
    """Same weights, same input, same *random* upstream gradient -> same everything.

    Copies the torch module's parameters and buffers into the NumPy module (unless
    ``sync_weights`` is False), runs both forwards, backpropagates one seeded random upstream
    gradient through both, and compares the output, the input gradient and every parameter
    gradient by name, shape and dtype; then every buffer (e.g. BatchNorm running stats).
    Returns the NumPy and torch results for further checks.
    """
    tdt = TORCH_DTYPE[np.dtype(dtype).type]
    torch_module = torch_module.to(tdt)
    np_module.to(dtype)
    if sync_weights:
        torch_to_numpy(torch_module, np_module)
    if x is None:
        x = make_input(input_shape, dtype, seed)
    x = np.asarray(x, dtype=dtype)
    xt = torch.tensor(x, requires_grad=input_grad)

    y_np = np_module(x.copy())
    y_t = torch_module(xt)
    assert_close(y_np, y_t, "output", dtype, scale)

    upstream = np.random.default_rng(seed + 1).standard_normal(y_np.shape).astype(dtype)
    gx_np = np_module.backward(upstream.copy())
    y_t.backward(torch.from_numpy(upstream))
    if input_grad:
        assert_close(gx_np, xt.grad, "grad_input", dtype, scale)

    np_params = dict(np_module.named_parameters())
    t_params = dict(torch_module.named_parameters())
    assert list(np_params) == list(t_params), f"parameter names {list(np_params)} != torch {list(t_params)}"
    for name, tp in t_params.items():
        g_np = np_params[name].grad
        if tp.grad is None:
            assert g_np is None or not np.any(g_np), f"grad {name}: torch has none, numpy has {g_np}"
            continue
        assert g_np is not None, f"grad {name}: numpy has none"
        assert_close(g_np, tp.grad, f"grad {name}", dtype, scale)

    np_state, t_state = np_module.state_dict(), torch_module.state_dict()
    assert list(np_state) == list(t_state), f"state_dict keys {list(np_state)} != torch {list(t_state)}"
    for name in dict(torch_module.named_buffers()):
        assert_close(np_state[name], t_state[name], f"buffer {name}", dtype, scale)
    return {"y_np": y_np, "y_t": y_t, "gx_np": gx_np, "x_t": xt, "upstream": upstream}


def assert_loss_parity(
    np_loss,
    torch_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: np.ndarray,
    target: np.ndarray,
    dtype=np.float64,
    seed: int = 0,
    scale: float = 1.0,
) -> tuple[float, np.ndarray]:
    """Loss value and d loss / d logits, scaled by a random upstream scalar (never a bare 1)."""
    logits = np.asarray(logits, dtype=dtype)
    target = np.asarray(target, dtype=dtype) if np.issubdtype(np.asarray(target).dtype, np.floating) else target
    lt = torch.tensor(logits, requires_grad=True)
    tt = torch.from_numpy(np.array(target, copy=True))
    loss_np = np_loss(logits.copy(), np.array(target, copy=True))
    loss_t = torch_loss_fn(lt, tt)
    assert np.isfinite(loss_np), f"loss is {loss_np}"
    assert_close(np.asarray(loss_np, dtype=dtype), loss_t, "loss", dtype, scale)
    upstream = float(np.random.default_rng(seed + 1).uniform(0.5, 2.0))
    g_np = np_loss.backward() * np.asarray(upstream, dtype=dtype)
    (loss_t * upstream).backward()
    assert np.all(np.isfinite(g_np)), "grad_logits has non-finite entries"
    assert_close(g_np, lt.grad, "grad_logits", dtype, scale)
    return loss_np, g_np
