"""Stochastic gradient descent, optionally with (Nesterov) momentum. Twin: ``torch.optim.SGD``."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, blocks


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum). Twin: ``torch.optim.SGD``.

    Algorithm (torch's, step t = 1, 2, ...)::

        input: γ (lr), θ (params), λ (weight decay), μ (momentum), τ (dampening), nesterov, maximize
        g_t ← −∇θ f_t(θ_{t−1}) if maximize else ∇θ f_t(θ_{t−1})
        if λ ≠ 0:  g_t ← g_t + λ θ_{t−1}
        if μ ≠ 0:
            b_t ← g_t                          if t = 1   (no dampening at the first step)
            b_t ← μ b_{t−1} + (1 − τ) g_t      otherwise
            g_t ← g_t + μ b_t  if nesterov  else  b_t
        θ_t ← θ_{t−1} − γ g_t

    Args:
        params: iterable of ``Parameter`` or of param-group dicts.
        lr: learning rate γ (default 1e-3).
        momentum: μ (default 0).
        dampening: τ (default 0).
        weight_decay: λ, an L2 term added to the gradient (default 0).
        nesterov: Nesterov momentum (needs μ > 0 and τ = 0).
        maximize: ascend instead of descend (keyword only, as torch).

    State per parameter: ``momentum_buffer`` (only when μ ≠ 0).

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); model.backward(crit.backward()); opt.step()
    """

    # torch's SGD.__setstate__: the values flags missing from a loaded state take (see Optimizer.load_state_dict;
    # foreach, differentiable and fused choose torch kernels, not arithmetic, and have no numpy_nn twin)
    _flag_defaults = {"nesterov": False, "maximize": False}

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in self._params_with_grad(group):
                buffer, first = None, False
                if mu != 0:  # torch keeps state only for momentum
                    state = self.state[p]
                    first = "momentum_buffer" not in state
                    if first:
                        state["momentum_buffer"] = self._zeros_state(p)
                    buffer = state["momentum_buffer"]
                for theta, grad, buf in blocks(p.data, p.grad, buffer):
                    a, tmp = self._scratch_pair(theta.dtype, theta.size)
                    g = self._effective_grad(grad, theta, wd, maximize, out=a, tmp=tmp)
                    if buf is not None:
                        if first:
                            buf[...] = g  # b_1 = g_1
                        else:
                            buf *= mu
                            buf += np.multiply(g, 1 - tau, out=tmp)  # b ← μ b + (1 − τ) g
                        if nesterov:
                            g = np.add(g, np.multiply(buf, mu, out=tmp), out=a)  # g ← g + μ b
                        else:
                            g = buf
                    theta -= np.multiply(g, lr, out=tmp)  # θ ← θ − γ g
