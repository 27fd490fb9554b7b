"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019). Twin: ``torch.optim.AdamW``."""

from __future__ import annotations

from .adam import adam_block_update, adam_scalars, adam_state, check_adam_args
from .optimizer import Optimizer, blocks


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
                state = adam_state(self, p, amsgrad)
                step_size, sqrt_v_scale, eps_scaled = adam_scalars(state, lr, beta1, beta2, eps)
                arrays = (p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"))
                for theta, grad, m, v, v_max in blocks(*arrays):
                    a, tmp = self._scratch_pair(theta.dtype, theta.size)
                    g = self._effective_grad(grad, theta, weight_decay=0, maximize=maximize, out=a, tmp=tmp)
                    if wd != 0:
                        theta *= 1 - lr * wd  # θ ← θ (1 − γλ): decoupled decay, not through g
                    adam_block_update(theta, g, m, v, v_max, beta1, beta2, step_size, sqrt_v_scale, eps_scaled, tmp)
