"""The library's default random generator, seeded like ``torch.manual_seed``.

Initialisation and dropout draw from ``default_generator()`` unless given their own
``np.random.Generator``. ``manual_seed(s)`` makes a run repeatable.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator (twin: ``torch.manual_seed``) and return it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    return _generator
