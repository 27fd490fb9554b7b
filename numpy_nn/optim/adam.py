"""Adam: adaptive moment estimation (Kingma & Ba, 2015). Twin: ``torch.optim.Adam``."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, blocks, lerp_


def check_adam_args(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """torch's argument checks and messages for Adam and AdamW."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not (isinstance(betas[0], float) and isinstance(betas[1], float)):
        raise ValueError("betas must be either both floats or both Tensors")


class Adam(Optimizer):
    """Adam. Twin: ``torch.optim.Adam``.

    Algorithm (torch's, step t = 1, 2, ...)::

        input: γ (lr), β1, β2 (betas), ε (eps), λ (weight decay), amsgrad, maximize
        init:  m_0 ← 0 (exp_avg), v_0 ← 0 (exp_avg_sq), v_0^max ← 0 (max_exp_avg_sq)
        g_t ← −∇θ f_t(θ_{t−1}) if maximize else ∇θ f_t(θ_{t−1})
        if λ ≠ 0:  g_t ← g_t + λ θ_{t−1}          (coupled: the decay goes through m and v)
        m_t ← β1 m_{t−1} + (1 − β1) g_t
        v_t ← β2 v_{t−1} + (1 − β2) g_t²
        m̂_t ← m_t / (1 − β1^t)
        if amsgrad:
            v_t^max ← max(v_{t−1}^max, v_t)
            v̂_t ← v_t^max / (1 − β2^t)
        else:
            v̂_t ← v_t / (1 − β2^t)
        θ_t ← θ_{t−1} − γ m̂_t / (√v̂_t + ε)

    As torch computes it: step_size = γ / (1 − β1^t), denom = √v / √(1 − β2^t) + ε,
    θ ← θ − m / (denom / step_size) (torch's capturable form; at t = 1, m̂ = g and v̂ = g²), and
    m is updated with torch's ``lerp`` (m ← m + (1 − β1)(g − m)). For decoupled weight decay use
    ``AdamW`` (or ``decoupled_weight_decay=True``).

    Args:
        params: iterable of ``Parameter`` or of param-group dicts.
        lr: γ (default 1e-3).
        betas: (β1, β2) (default (0.9, 0.999)).
        eps: ε, added after the square root (default 1e-8).
        weight_decay: λ, an L2 term added to the gradient (default 0).
        amsgrad: keep the running maximum of v (AMSGrad; default False).
        maximize: ascend instead of descend (keyword only).
        decoupled_weight_decay: apply λ as AdamW does, θ ← θ (1 − γλ), instead of through the
            gradient (keyword only, default False; ``AdamW`` is Adam with it set, as in torch).

    State per parameter: ``step`` (a float), ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq``
    with amsgrad.

    Speed: all of a step's arithmetic runs block by block (``optimizer.blocks``) in place in the
    parameter's dtype; scalars are Python floats, which NumPy casts to float32 for float32
    arrays instead of promoting the arrays to float64.
    """

    # torch's Adam.__setstate__: flags a state saved by an older version may lack take these values
    # on load_state_dict (not the constructor's). torch also defaults foreach, capturable,
    # differentiable and fused there: they choose torch's kernels, not the arithmetic, so numpy_nn
    # has no such options (a loaded torch state keeps them as they are, unused).
    _flag_defaults = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        check_adam_args(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            decoupled = group["decoupled_weight_decay"]
            for p in self._params_with_grad(group):
                state = adam_state(self, p, amsgrad)
                step_size, sqrt_v_scale, eps_scaled = adam_scalars(state, lr, beta1, beta2, eps)
                v_max = state.get("max_exp_avg_sq") if amsgrad else None  # the group's flag decides, as torch
                arrays = (p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], v_max)
                for theta, grad, m, v, v_max in blocks(*arrays):
                    a, tmp = self._scratch_pair(theta.dtype, theta.size)
                    # coupled: g + λθ goes through m and v; decoupled (AdamW): θ ← θ (1 − γλ), g untouched
                    g = self._effective_grad(grad, theta, 0 if decoupled else wd, maximize, out=a, tmp=tmp)
                    if decoupled and wd != 0:
                        theta *= 1 - lr * wd
                    adam_block_update(theta, g, m, v, v_max, beta1, beta2, step_size, sqrt_v_scale, eps_scaled, tmp)


def adam_state(opt: Optimizer, p, amsgrad: bool) -> dict:
    """The parameter's state, created on its first step (zeros in the parameter's dtype); step += 1."""
    state = opt.state[p]
    if not state:
        state["step"] = 0.0
        state["exp_avg"] = opt._zeros_state(p)
        state["exp_avg_sq"] = opt._zeros_state(p)
        if amsgrad:
            state["max_exp_avg_sq"] = opt._zeros_state(p)
    state["step"] += 1
    return state


def adam_scalars(state: dict, lr: float, beta1: float, beta2: float, eps: float):
    """(step_size, 1 / (√(1 − β2^t) · step_size), ε / step_size) as Python floats.

    Python floats, never NumPy float64 scalars, so float32 arithmetic stays float32. With lr = 0
    the step size is 0 and the last two are unused (``adam_block_update`` leaves θ as is).
    """
    t = state["step"]
    step_size = lr / (1 - beta1**t)
    if step_size == 0:
        return 0.0, 0.0, 0.0
    bias_correction2_sqrt = (1 - beta2**t) ** 0.5
    return step_size, 1 / (bias_correction2_sqrt * step_size), eps / step_size


def adam_block_update(theta, g, m, v, v_max, beta1, beta2, step_size, sqrt_v_scale, eps_scaled, tmp) -> None:
    """Adam's moment updates and parameter step on one block, in place (shared by Adam and AdamW,
    which differ only in how weight decay enters: through g, or on θ directly)."""
    lerp_(m, g, 1 - beta1, tmp)  # m ← β1 m + (1 − β1) g
    v *= beta2
    np.multiply(g, 1 - beta2, out=tmp)
    v += np.multiply(tmp, g, out=tmp)  # v ← β2 v + (1 − β2) g²
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)  # v^max ← max(v^max, v)   (amsgrad)
    if step_size != 0:
        # θ ← θ − step_size · m / denom with denom = √v / √(1 − β2^t) + ε, as
        # θ ← θ − m / (denom / step_size): scaling the denominator instead of the
        # quotient saves a pass (torch's capturable Adam computes it this way).
        np.sqrt(v if v_max is None else v_max, out=tmp)
        tmp *= sqrt_v_scale
        tmp += eps_scaled  # denom / step_size
        theta -= np.divide(m, tmp, out=tmp)
