"""Weight exchange between the tracks: exact, no renaming, no transposes.

Both tracks use torch's names and layouts (Linear weight (out, in), Conv2d weight
(C_out, C_in, kH, kW), BatchNorm buffers ``running_mean``/``running_var``/``num_batches_tracked``),
so converting is only a change of container. Values are copied bit for bit.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch


def to_numpy_state(torch_state: dict) -> "OrderedDict[str, np.ndarray]":
    """torch ``state_dict`` -> ``{name: np.ndarray}`` (detached CPU copies, same dtypes)."""
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in torch_state.items())


def to_torch_state(numpy_state: dict) -> "OrderedDict[str, torch.Tensor]":
    """``{name: np.ndarray}`` -> torch ``state_dict`` (CPU tensors, same dtypes)."""
    return OrderedDict((k, torch.from_numpy(np.array(v, copy=True))) for k, v in numpy_state.items())


def numpy_to_torch(np_model, torch_model: torch.nn.Module) -> torch.nn.Module:
    """Load a numpy_nn model's weights and buffers into a torch model (strict)."""
    state = to_torch_state(np_model.state_dict())
    ref = torch_model.state_dict()
    for k, v in state.items():  # keep each receiving tensor's dtype (e.g. int64 counters)
        if k in ref:
            state[k] = v.to(ref[k].dtype)
    torch_model.load_state_dict(state, strict=True)
    return torch_model


def torch_to_numpy(torch_model: torch.nn.Module, np_model):
    """Load a torch model's weights and buffers into a numpy_nn model (strict)."""
    np_model.load_state_dict(to_numpy_state(torch_model.state_dict()), strict=True)
    return np_model
