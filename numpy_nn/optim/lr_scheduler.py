"""Learning-rate schedulers. Twin: ``torch.optim.lr_scheduler`` (same formulas, same state).

A scheduler writes ``group["lr"]`` of its optimizer's param groups. As in torch:

* the constructor stores ``group["initial_lr"]`` (the base lr, ``base_lrs``) and performs the
  initial step, so ``last_epoch`` is 0 and the lr is the schedule's value at epoch 0;
* each ``step()`` (called after ``optimizer.step()``) advances ``last_epoch`` by one;
* the formulas are torch's *recursive* ones (each lr computed from the previous lr), so the
  floating-point values equal torch's exactly, including past ``T_max`` for the cosine;
* ``state_dict()`` is every attribute except the optimizer; ``load_state_dict()`` restores it.

Typical use, warm-up then cosine decay::

    warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
    cosine = CosineAnnealingLR(opt, T_max=95, eta_min=1e-6)
    sched = SequentialLR(opt, [warmup, cosine], milestones=[5])
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_right

from .optimizer import Optimizer


class LRScheduler:
    """Base class. Twin: ``torch.optim.lr_scheduler.LRScheduler``.

    Args:
        optimizer: the optimizer whose ``param_groups[i]["lr"]`` are scheduled.
        last_epoch: -1 (default) to start; a value ≥ 0 resumes (then every group must hold
            ``initial_lr``).

    Attributes:
        base_lrs: each group's ``initial_lr``.
        last_epoch: index of the last epoch (or step) seen; 0 after construction.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler "
                        "with last_epoch >= 0"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        """Reset the step count and take the constructor's step (torch's ``_initial_step``)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lrs for the new ``last_epoch`` (called by ``step``)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The lrs set by the latest step, one per param group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch (or step) and write the new lrs into the param groups."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        """Recursive formula for the next epoch, or (``epoch`` given: SequentialLR's milestone
        restart) the closed form at ``epoch``."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._get_closed_form_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def _group_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (copies), as torch."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs. Twin: ``torch.optim.lr_scheduler.StepLR``.

    lr_t = lr_{t−1} · γ if t > 0 and t mod step_size = 0, else lr_{t−1}
    (closed form: base_lr · γ^⌊t / step_size⌋).

    Args:
        optimizer: wrapped optimizer.
        step_size: period of the decay, in epochs.
        gamma: multiplicative factor (default 0.1).
        last_epoch: -1 to start (default).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the lr by a factor moving linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs, then keep it. Twin: ``torch.optim.lr_scheduler.LinearLR``.

    Closed form: lr_t = base_lr · (s + (e − s) · min(t, T) / T); computed recursively as torch:
    lr_0 = lr · s, lr_t = lr_{t−1} · (1 + (e − s) / (T·s + (t − 1)(e − s))) for 0 < t ≤ T.

    Args:
        optimizer: wrapped optimizer.
        start_factor: s ∈ (0, 1] (default 1/3).
        end_factor: e ∈ [0, 1] (default 1).
        total_iters: T, epochs of the ramp (default 5).
        last_epoch: -1 to start (default).
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._group_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._group_lrs()
        s, e = self.start_factor, self.end_factor
        factor = 1.0 + (e - s) / (self.total_iters * s + (self.last_epoch - 1) * (e - s))
        return [lr * factor for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        s, e = self.start_factor, self.end_factor
        return [
            base_lr * (s + (e - s) * min(self.total_iters, self.last_epoch) / self.total_iters)
            for base_lr in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base lr down to ``eta_min`` over ``T_max`` epochs.
    Twin: ``torch.optim.lr_scheduler.CosineAnnealingLR``.

    Closed form (SGDR without restarts): η_t = η_min + ½(η_max − η_min)(1 + cos(π t / T_max)).
    Computed recursively as torch:

        η_t = η_min + (η_{t−1} − η_min) · (1 + cos(π t / T_max)) / (1 + cos(π (t − 1) / T_max))

    with torch's special case when (t − 1 − T_max) is a multiple of 2·T_max (where the
    denominator above vanishes): η_t = η_{t−1} + (η_max − η_min)(1 − cos(π / T_max)) / 2.
    Past T_max the lr therefore rises again along the cosine (period 2·T_max), as in torch.

    Args:
        optimizer: wrapped optimizer.
        T_max: half period, in epochs (or steps).
        eta_min: η_min (default 0).
        last_epoch: -1 to start (default).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._group_lrs()
        if self._step_count == 1 and t > 0:
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(t * math.pi / T)) / 2 for base_lr in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [
                lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                for base_lr, lr in zip(self.base_lrs, self._group_lrs())
            ]
        return [
            (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - eta_min) + eta_min
            for lr in self._group_lrs()
        ]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base_lr in self.base_lrs
        ]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the ``milestones`` (epochs).
    Twin: ``torch.optim.lr_scheduler.SequentialLR``.

    At construction the lrs are reset to ``initial_lr``, the sub-schedulers' own initial steps
    are undone, and the first scheduler takes the initial step. At a milestone m the next
    scheduler restarts from its closed form at epoch 0 (its base lr), then steps on recursively.

    Args:
        optimizer: wrapped optimizer (all schedulers must wrap it).
        schedulers: the schedulers, in order.
        milestones: len(schedulers) − 1 increasing epochs.
        last_epoch: -1 to start (default).
    """

    def __init__(self, optimizer: Optimizer, schedulers: list[LRScheduler], milestones: list[int],
                 last_epoch: int = -1):
        name = type(self).__name__
        if len(schedulers) < 1:
            raise ValueError(f"{name} expects at least one scheduler, but got no scheduler.")
        for i, sched in enumerate(schedulers):
            if not hasattr(sched, "optimizer"):
                raise TypeError(f"{name} at index {i} should have `optimizer` as its attribute.")
            if sched.optimizer is not optimizer:
                raise ValueError(
                    f"{name} expects all schedulers to belong to the same optimizer, but got scheduler "
                    f"{type(sched).__name__} at index {i} has {sched.optimizer}, which is different from "
                    f"{type(optimizer).__name__}."
                )
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                f"of milestone points, but got number of schedulers {len(schedulers)} and the number of "
                f"milestones to be equal to {len(milestones)}"
            )
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # reset the lrs to their initial values
            group["lr"] = group["initial_lr"]
        self._undo_initial_steps(self)  # undo the step each sub-scheduler's constructor took
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()  # only the scheduler meant for epoch 0 steps
        self._last_lr = self._schedulers[idx].get_last_lr()

    @classmethod
    def _undo_initial_steps(cls, sched) -> None:
        """Step back every (nested) sub-scheduler by one epoch (torch's ``recursive_undo``)."""
        if hasattr(sched, "_schedulers"):
            for sub in sched._schedulers:
                cls._undo_initial_steps(sub)
        else:
            sched.last_epoch -= 1

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._update_lr(0)  # restart this scheduler at its epoch 0
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    def state_dict(self) -> dict:
        """Own attributes plus each sub-scheduler's ``state_dict`` under ``_schedulers``."""
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = {k: copy.deepcopy(v) for k, v in state_dict.items() if k != "_schedulers"}
        self.__dict__.update(state)
        for sched, sub in zip(self._schedulers, state_dict["_schedulers"]):
            sched.load_state_dict(sub)
