"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019). Twin: ``torch.optim.AdamW``."""

from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
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

    As in torch, ``AdamW`` is ``Adam`` with ``decoupled_weight_decay=True`` (see ``Adam.step``)
    and torch's default λ = 1e-2.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)

    def _apply_flag_defaults(self, group: dict) -> None:
        super()._apply_flag_defaults(group)
        group["decoupled_weight_decay"] = True  # torch's AdamW.__setstate__: always decoupled
