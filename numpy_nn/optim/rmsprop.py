"""RMSprop: divide the gradient by a running root-mean-square. Twin: ``torch.optim.RMSprop``."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, blocks, lerp_


class RMSprop(Optimizer):
    """RMSprop. Twin: ``torch.optim.RMSprop``.

    Algorithm (torch's, step t = 1, 2, ...)::

        input: γ (lr), α (alpha), ε (eps), λ (weight decay), μ (momentum), centered, maximize
        init:  v_0 ← 0 (square_avg), b_0 ← 0 (momentum_buffer), g^ave_0 ← 0 (grad_avg)
        g_t ← −∇θ f_t(θ_{t−1}) if maximize else ∇θ f_t(θ_{t−1})
        if λ ≠ 0:  g_t ← g_t + λ θ_{t−1}
        v_t ← α v_{t−1} + (1 − α) g_t²
        ṽ_t ← v_t
        if centered:
            g^ave_t ← α g^ave_{t−1} + (1 − α) g_t
            ṽ_t ← ṽ_t − (g^ave_t)²
        if μ > 0:
            b_t ← μ b_{t−1} + g_t / (√ṽ_t + ε)
            θ_t ← θ_{t−1} − γ b_t
        else:
            θ_t ← θ_{t−1} − γ g_t / (√ṽ_t + ε)

    Note ε is added *after* the square root (unlike Adagrad-style √(v + ε)).

    Args:
        params: iterable of ``Parameter`` or of param-group dicts.
        lr: γ (default 1e-2).
        alpha: smoothing constant α (default 0.99).
        eps: ε (default 1e-8).
        weight_decay: λ (default 0).
        momentum: μ (default 0).
        centered: normalise by an estimate of the gradient's variance (default False).
        maximize: ascend instead of descend (keyword only).

    State per parameter: ``step``, ``square_avg``; ``momentum_buffer`` if μ > 0; ``grad_avg`` if
    centered.
    """

    # torch's RMSprop.__setstate__: the values flags missing from a loaded state take (see
    # Optimizer.load_state_dict; foreach, differentiable and capturable choose torch kernels, no numpy_nn twin)
    _flag_defaults = {"momentum": 0, "centered": False, "maximize": False}

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, alpha, eps, mu = group["lr"], group["alpha"], group["eps"], group["momentum"]
            wd, centered, maximize = group["weight_decay"], group["centered"], group["maximize"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["square_avg"] = self._zeros_state(p)
                    if mu > 0:
                        state["momentum_buffer"] = self._zeros_state(p)
                    if centered:
                        state["grad_avg"] = self._zeros_state(p)
                state["step"] += 1
                arrays = (p.data, p.grad, state["square_avg"], state.get("momentum_buffer"), state.get("grad_avg"))
                for theta, grad, v, buf, gavg in blocks(*arrays):
                    a, tmp = self._scratch_pair(theta.dtype, theta.size)
                    g = self._effective_grad(grad, theta, wd, maximize, out=a, tmp=tmp)
                    v *= alpha
                    np.multiply(g, 1 - alpha, out=tmp)
                    v += np.multiply(tmp, g, out=tmp)  # v ← α v + (1 − α) g²
                    if centered:
                        lerp_(gavg, g, 1 - alpha, tmp)  # g^ave ← α g^ave + (1 − α) g
                        np.multiply(gavg, gavg, out=tmp)
                        np.subtract(v, tmp, out=tmp)  # ṽ = v − (g^ave)²
                        np.sqrt(tmp, out=tmp)
                    else:
                        np.sqrt(v, out=tmp)
                    tmp += eps  # √ṽ + ε
                    if mu > 0:
                        buf *= mu
                        buf += np.divide(g, tmp, out=tmp)  # b ← μ b + g / (√ṽ + ε)
                        theta -= np.multiply(buf, lr, out=tmp)  # θ ← θ − γ b
                    else:
                        np.divide(g, tmp, out=tmp)
                        theta -= np.multiply(tmp, lr, out=tmp)  # θ ← θ − γ g / (√ṽ + ε)
