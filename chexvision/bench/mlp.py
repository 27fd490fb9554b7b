"""Bench section ``mlp``: one training step of CheXVision-mini, NumPy vs torch, float32.

The step is the app's: ``train_step`` (zero_grad, forward, BCE-with-logits, backward, Adam) of
the default MLP 4096 → 1024 → 256 → 64 → 1 with dropout 0.3 (4.46 M parameters), at batch
64, 128 and 256, for

* ``numpy``: numpy_nn (``numpy_nn.training.train_step``, ``numpy_nn.optim.Adam``);
* ``torch Adam``: torch_ref with ``torch.optim.Adam`` as constructed by default (on the CPU:
  the one-tensor-at-a-time implementation);
* ``torch Adam fused``: the same with ``fused=True`` (one fused kernel per parameter).

Each row: ms per step and samples/s (per round the best of a few steps, then the median over
rounds, engines interleaved round by round so that a burst of load from another process hits
all of them alike), the step's arithmetic rate, and
that rate as a fraction of the *GEMM ceiling*: the rate the same library reaches on the step's
matrix products alone (timed here, same shapes, same threads). The step's FLOPs are those of
its products: forward 2·N·D_in·D_out per Linear, backward 2·N·D_in·D_out for dW and again for
dX of every Linear but the first (the input needs no gradient). ``Adam ms`` is the optimizer
step alone. torch rows also give ``numpy ×``: NumPy's samples/s divided by that row's.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import numpy as np

from chexvision.bench.timing import progress

TITLE = "MLP training step (forward + BCE + backward + Adam), float32: NumPy vs torch"

IN_FEATURES, HIDDEN, DROPOUT = 4096, (1024, 256, 64), 0.3
LAYERS = list(zip((IN_FEATURES, *HIDDEN), (*HIDDEN, 1)))  # (D_in, D_out) of each Linear


def step_flops(batch: int) -> float:
    """FLOPs of the step's matrix products (see the module docstring)."""
    fwd = sum(2 * batch * d_in * d_out for d_in, d_out in LAYERS)
    grad_w = fwd
    grad_x = fwd - 2 * batch * LAYERS[0][0] * LAYERS[0][1]  # no dX for the first Linear
    return float(fwd + grad_w + grad_x)


SWITCH_PAUSE_S = 0.1


def _best_time(fn, repeats: int) -> float:
    """Fastest of ``repeats`` calls, after a pause and one untimed call.

    The pause is for fairness between the libraries in one process: after a product, OpenBLAS's
    worker threads (NumPy) spin-wait for some tens of milliseconds, holding the cores that
    torch's threads need next (measured: torch's products then take twice as long). Idling
    ``SWITCH_PAUSE_S`` lets them go to sleep before the other engine is timed.
    """
    time.sleep(SWITCH_PAUSE_S)
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _interleaved(fns: dict, rounds: int, per_round: int) -> dict:
    """Seconds per call of each fn: the median over rounds of each round's best, the fns
    alternating round by round (so a burst of load from another process hits all alike)."""
    for fn in fns.values():  # warm-up: allocations, optimizer state, thread pools
        fn()
    samples: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(_best_time(fn, per_round))
    return {name: statistics.median(s) for name, s in samples.items()}


# -- NumPy ------------------------------------------------------------------------------------------
def numpy_step(batch: int, rng: np.random.Generator):
    """Closures running one numpy_nn training step on a fixed random batch, and the optimizer
    step alone."""
    from numpy_nn import models
    from numpy_nn.layers import Dropout
    from numpy_nn.losses import BCEWithLogitsLoss
    from numpy_nn.optim import Adam
    from numpy_nn.training import train_step

    model = models.MLP(IN_FEATURES, HIDDEN, 1, dropout=DROPOUT, dtype=np.float32)
    for m in model.modules():
        if isinstance(m, Dropout):
            m.generator = rng
    # The input is data: skip dL/dx of the first Linear, as torch's autograd does.
    model.layers[0].needs_input_grad = False
    model.train()
    criterion, optimizer = BCEWithLogitsLoss(), Adam(model.parameters(), lr=1e-4)
    x = rng.standard_normal((batch, IN_FEATURES), dtype=np.float32)
    y = (rng.random(batch) < 0.5).astype(np.float32)
    return (lambda: train_step(model, criterion, optimizer, x, y)), optimizer.step


def numpy_gemms(batch: int, rng: np.random.Generator):
    """The step's matrix products alone, in NumPy (same shapes and layouts as numpy_nn.Linear)."""
    mats = []
    for i, (d_in, d_out) in enumerate(LAYERS):
        x = rng.standard_normal((batch, d_in), dtype=np.float32)
        w = rng.standard_normal((d_out, d_in), dtype=np.float32)
        dy = rng.standard_normal((batch, d_out), dtype=np.float32)
        mats.append((x, w, dy, i > 0))

    def run():
        for x, w, dy, need_dx in mats:
            x @ w.T  # forward
            dy.T @ x  # dW
            if need_dx:
                dy @ w  # dX
    return run


# -- torch ------------------------------------------------------------------------------------------
def torch_step(batch: int, rng: np.random.Generator, fused: bool):
    import torch

    from torch_ref import models
    from torch_ref.losses import BCEWithLogitsLoss
    from torch_ref.training import train_step

    model = models.MLP(IN_FEATURES, HIDDEN, 1, dropout=DROPOUT, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True if fused else None)
    criterion = BCEWithLogitsLoss()
    x = torch.from_numpy(rng.standard_normal((batch, IN_FEATURES), dtype=np.float32))
    y = torch.from_numpy((rng.random(batch) < 0.5).astype(np.float32))
    return (lambda: train_step(model, criterion, optimizer, x, y)), optimizer.step


def torch_gemms(batch: int, rng: np.random.Generator):
    import torch

    mats = []
    for i, (d_in, d_out) in enumerate(LAYERS):
        t = lambda *shape: torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))  # noqa: E731
        mats.append((t(batch, d_in), t(d_out, d_in), t(batch, d_out), i > 0))

    def run():
        with torch.no_grad():
            for x, w, dy, need_dx in mats:
                x @ w.T
                dy.T @ x
                if need_dx:
                    dy @ w
    return run


def run(quick: bool) -> list[dict]:
    have_torch = importlib.util.find_spec("torch") is not None
    rounds, per_round = (3, 2) if quick else (9, 4)
    rows = []
    adam_s: dict = {}
    for batch in (64, 128, 256):
        rng = np.random.default_rng(batch)
        engines = {"numpy": numpy_step(batch, rng)}
        gemms = {"numpy": numpy_gemms(batch, rng)}
        if have_torch:
            engines["torch Adam"] = torch_step(batch, rng, fused=False)
            engines["torch Adam fused"] = torch_step(batch, rng, fused=True)
            gemms["torch"] = torch_gemms(batch, rng)
        step_s = _interleaved({name: fns[0] for name, fns in engines.items()}, rounds, per_round)
        if not adam_s:  # the optimizer step alone (4.46 M parameters whatever the batch)
            adam_s = _interleaved({name: fns[1] for name, fns in engines.items()}, rounds, per_round)
        gemm_s = _interleaved(gemms, rounds, per_round)
        flops = step_flops(batch)
        for engine, seconds in step_s.items():
            ceiling = flops / gemm_s["numpy" if engine == "numpy" else "torch"]
            row = {
                "batch": batch,
                "engine": engine,
                "ms/step": seconds * 1e3,
                "samples/s": batch / seconds,
                "Adam ms": adam_s[engine] * 1e3,
                "GFLOP/s": flops / seconds / 1e9,
                "GEMM ceiling GFLOP/s": ceiling / 1e9,
                "of ceiling": flops / seconds / ceiling,
            }
            if engine != "numpy":
                row["numpy ×"] = step_s[engine] / step_s["numpy"]
            rows.append(row)
        progress("mlp", f"batch {batch} timed")
    if not have_torch:
        rows.append({"engine": "torch: not installed (NumPy rows only)"})
    return rows
