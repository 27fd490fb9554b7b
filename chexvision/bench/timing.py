"""Timing helpers shared by the bench sections."""

from __future__ import annotations

import sys
import time
from typing import Callable

_START = [time.perf_counter()]


def start_clock() -> None:
    """Elapsed times in ``progress`` lines count from here (``bench.run`` calls it once)."""
    _START[0] = time.perf_counter()


def progress(section: str, message: str) -> None:
    """One line on stderr while a section runs: what was just timed and the time elapsed so far."""
    print(f"bench: {section}: {message} ({time.perf_counter() - _START[0]:.0f} s elapsed)", file=sys.stderr, flush=True)


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs (after ``warmup`` runs).

    The median resists the odd slow run caused by another process on a 2-core machine.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def target_row(measure: str, value: float, op: str, bound: float, **extra) -> dict:
    """A table row for a measured ratio with a target: ``target`` says it, ``verdict`` is "met" or
    "missed" (a plain comparison of this run's figure; no margin for noise)."""
    met = value >= bound if op == ">=" else value < bound
    return {"measure": measure, **extra, "ratio": value, "target": f"{op} {bound:g}", "verdict": "met" if met else "missed"}
