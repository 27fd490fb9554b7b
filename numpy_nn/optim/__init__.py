"""Optimizers and learning-rate schedulers. Twin: ``torch.optim`` / ``torch.optim.lr_scheduler``.

Same names, arguments, defaults, update rules, state names and ``state_dict`` layout as torch::

    opt = Adam(model.parameters(), lr=1e-3)          # or param groups: [{"params": [...], ...}]
    sched = CosineAnnealingLR(opt, T_max=10)
    opt.zero_grad(); loss = crit(model(x), y); model.backward(crit.backward()); opt.step()
    sched.step()
"""

from . import lr_scheduler
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "lr_scheduler"]
