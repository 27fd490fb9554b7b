"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019). Twin: ``torch.optim.AdamW``."""

from __future__ import annotations

import numpy as np

from .adam import check_adam_args
from .optimizer import Optimizer, blocks, lerp_


class AdamW(Optimizer):
    """AdamW. Twin: ``torch.optim.AdamW``.

    Algorithm (torch's, step t = 1, 2, ...)::

        input: γ (lr), β1, β2 (betas), ε (eps), λ (weight decay), amsgrad, maximize
        init:  m_0 ← 0 (exp_avg), v_0 ← 0 (exp_avg_sq), v_0^max ← 0 (max_exp_avg_sq)
        g_t ← −∇θ f_t(θ_{t−1}) if maximize else ∇θ f_t(θ_{t−1})
        θ_t ← θ_{t−1} − γ λ θ_{t−1}                 (decoupled: the decay never enters m or v)
        m_t ← β1 m_{t−1} + (1 − β1) g_t
        v_t ← β2 v_{t−1} + (1 − β2) g_t²
        m̂_t ← m_t / (1 − β1^t)
        if amsgrad:
            v_t^max ← max(v_{t−1}^max, v_t)
            v̂_t ← v_t^max / (1 − β2^t)
        else:
            v̂_t ← v_t / (1 − β2^t)
        θ_t ← θ_t − γ m̂_t / (√v̂_t + ε)

    Unlike ``Adam(weight_decay=λ)``, which adds λθ to the gradient (and so divides the decay by
    √v̂), the decay here shrinks every weight by the same factor (1 − γλ) per step.

    Args:
        params: iterable of ``Parameter`` or of param-group dicts.
        lr: γ (default 1e-3).
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε, added after the square root (default 1e-8).
        weight_decay: λ (default 1e-2, torch's AdamW default).
        amsgrad: keep the running maximum of v (default False).
        maximize: ascend instead of descend (keyword only).

    State per parameter: ``step`` (a float), ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq``
    with amsgrad.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        check_adam_args(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            for p in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["exp_avg"] = self._zeros_state(p)
                    state["exp_avg_sq"] = self._zeros_state(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = self._zeros_state(p)
                state["step"] += 1
                t = state["step"]
                # Python floats (never NumPy float64 scalars), so float32 arithmetic stays float32.
                step_size = lr / (1 - beta1**t)
                bias_correction2_sqrt = (1 - beta2**t) ** 0.5
                if step_size != 0:  # lr = 0 leaves θ as is (and the scaling below would divide by 0)
                    sqrt_v_scale, eps_scaled = 1 / (bias_correction2_sqrt * step_size), eps / step_size
                arrays = (p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"))
                for theta, grad, m, v, v_max in blocks(*arrays):
                    a, tmp = self._scratch_pair(theta.dtype, theta.size)
                    g = self._effective_grad(grad, theta, weight_decay=0, maximize=maximize, out=a, tmp=tmp)  # decay: below
                    if wd != 0:
                        theta *= 1 - lr * wd  # θ ← θ (1 − γλ)
                    lerp_(m, g, 1 - beta1, tmp)  # m ← β1 m + (1 − β1) g
                    v *= beta2
                    np.multiply(g, 1 - beta2, out=tmp)
                    v += np.multiply(tmp, g, out=tmp)  # v ← β2 v + (1 − β2) g²
                    if amsgrad:
                        np.maximum(v_max, v, out=v_max)  # v^max ← max(v^max, v)
                    if step_size != 0:
                        # θ ← θ − step_size · m / denom with denom = √v / √(1 − β2^t) + ε, as
                        # θ ← θ − m / (denom / step_size): scaling the denominator instead of the
                        # quotient saves a pass (torch's capturable Adam computes it this way).
                        np.sqrt(v_max if amsgrad else v, out=tmp)
                        tmp *= sqrt_v_scale
                        tmp += eps_scaled  # denom / step_size
                        theta -= np.divide(m, tmp, out=tmp)
