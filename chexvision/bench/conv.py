"""Bench section ``conv``: the NumPy convolution against torch's, and one CNN training epoch per track.

Rows:

* a 3×3, stride 1, padding 1 convolution of a (64, 16, 64, 64) float32 batch to 32 channels:
  forward, backward (input and weight gradients) and both, NumPy (im2col + one matrix product,
  ``numpy_nn.conv.Conv2d``) vs ``torch.nn.functional.conv2d`` with autograd, timed in the same run;
* DenseNet-121's layer shapes at batch 16, 224×224 (``DENSENET_CASES``: its 3×3 128→32 and 1×1
  convolutions, the 7×7/2 stem, BatchNorm2d in training mode, the 2×2 average pool and the 3×3/2
  max-pool), forward and forward + backward, NumPy vs the torch layer with the same weights;
* one training epoch of the CNN over 10,000 synthetic 64×64 images (batch 128, BCE, Adam) per
  track; with ``--quick`` a few batches are timed and the epoch extrapolated (the row says so).

Times are medians of repeated runs (2 shared cores: single runs are noisy). Without torch only the
NumPy figures are reported.
"""

from __future__ import annotations

import importlib.util
import math
import time
from typing import Callable

import numpy as np

TITLE = "conv: NumPy Conv2d vs torch, DenseNet-121 layer shapes, and one CNN epoch (10,000 images 64x64)"

CONV_SHAPE = (64, 16, 64, 64)  # (N, C_in, H, W)
CONV_OUT = 32
EPOCH_IMAGES = 10_000
BATCH = 128


def _have_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # an import hook that refuses torch (as the no-torch tests install)
        return False


def _timed(fn) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def _interleaved_medians(timers: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each timer, run round-robin (one of each per round, after one warm-up
    round), so that a burst of load from another process hits both tracks alike."""
    for t in timers.values():
        t()
    times: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(repeats):
        for k, t in timers.items():
            times[k].append(t())
    return {k: float(np.median(v)) for k, v in times.items()}


def _conv_rows(quick: bool) -> list[dict]:
    from numpy_nn.conv import Conv2d

    repeats = 3 if quick else 9
    rng = np.random.default_rng(0)
    x = rng.standard_normal(CONV_SHAPE, dtype=np.float32)
    conv = Conv2d(CONV_SHAPE[1], CONV_OUT, 3, stride=1, padding=1)
    g = rng.standard_normal(conv(x).shape, dtype=np.float32)

    def np_bwd():
        conv.zero_grad()
        conv.backward(g)  # input and weight (and bias) gradients; the columns of the last forward

    def np_both():
        conv.zero_grad()
        conv(x)
        conv.backward(g)

    parts = ("forward", "backward", "forward+backward")
    timers = {("numpy", "forward"): _timed(lambda: conv(x)), ("numpy", "backward"): _timed(np_bwd),
              ("numpy", "forward+backward"): _timed(np_both)}
    if _have_torch():
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.from_numpy(conv.weight.data.copy()).requires_grad_(True)
        bt = torch.from_numpy(conv.bias.data.copy()).requires_grad_(True)
        gt = torch.from_numpy(g)

        def t_fwd():
            with torch.no_grad():
                F.conv2d(xt, wt, bt, padding=1)

        def t_bwd() -> float:  # a fresh graph (untimed), then the timed backward alone
            xt.grad = wt.grad = bt.grad = None
            y = F.conv2d(xt, wt, bt, padding=1)
            t0 = time.perf_counter()
            y.backward(gt)
            return time.perf_counter() - t0

        def t_both():
            xt.grad = wt.grad = bt.grad = None
            F.conv2d(xt, wt, bt, padding=1).backward(gt)

        timers.update({("torch", "forward"): _timed(t_fwd), ("torch", "backward"): t_bwd,
                       ("torch", "forward+backward"): _timed(t_both)})
    med = _interleaved_medians(timers, repeats)
    rows = []
    for part in parts:
        t_np, t_t = med[("numpy", part)], med.get(("torch", part))
        rows.append({
            "case": f"conv3x3 {part}",
            "shape": "(64,16,64,64)->32",
            "numpy": 1e3 * t_np,
            "torch": None if t_t is None else 1e3 * t_t,
            "unit": "ms",
            "numpy/torch": None if t_t is None else t_np / t_t,
            "note": f"median of {repeats}, interleaved",
        })
    return rows


# DenseNet-121's layer shapes at batch 16, 224×224 (issue 12): id -> (input shape, numpy layer,
# torch layer), both built lazily. Most of DenseNet is 1×1 convolutions and 3×3 ones from 128 to 32
# channels, each after a BatchNorm2d + ReLU; transitions average-pool by 2; the stem is a 7×7/2
# convolution and a 3×3/2 max-pool.
DENSENET_CASES = {
    "dense conv3x3 128->32": ((16, 128, 56, 56), lambda nn_: nn_.Conv2d(128, 32, 3, padding=1, bias=False)),
    "dense conv1x1 256->128": ((16, 256, 28, 28), lambda nn_: nn_.Conv2d(256, 128, 1, bias=False)),
    "stem conv7x7/2 3->64": ((16, 3, 224, 224), lambda nn_: nn_.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)),
    "BatchNorm2d train": ((16, 256, 56, 56), lambda nn_: nn_.BatchNorm2d(256)),
    "AvgPool2d(2)": ((16, 128, 56, 56), lambda nn_: nn_.AvgPool2d(2)),
    "MaxPool2d(3,2,1)": ((16, 64, 112, 112), lambda nn_: nn_.MaxPool2d(3, 2, 1)),
}


def _densenet_layer_rows(quick: bool) -> list[dict]:
    """Forward, and forward + backward (input and parameter gradients), of each DenseNet-shaped
    layer, NumPy against torch with the same weights, timed interleaved in the same run."""
    import numpy_nn

    repeats = 3 if quick else 7
    rows = []
    for case, (shape, make) in DENSENET_CASES.items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        layer = make(numpy_nn)
        g = rng.standard_normal(layer(x).shape, dtype=np.float32)

        def np_both(layer=layer, x=x, g=g):
            layer.zero_grad()
            layer(x)
            layer.backward(g)

        timers = {("numpy", "forward"): _timed(lambda layer=layer, x=x: layer(x)),
                  ("numpy", "forward+backward"): _timed(np_both)}
        if _have_torch():
            import torch

            from torch_ref.exchange import numpy_to_torch

            t_layer = make(torch.nn)
            if list(layer.state_dict()):
                numpy_to_torch(layer, t_layer)
            xt, gt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(g)

            def t_fwd(t_layer=t_layer, xt=xt):
                with torch.no_grad():
                    t_layer(xt)

            def t_both(t_layer=t_layer, xt=xt, gt=gt):
                xt.grad = None
                t_layer.zero_grad()
                t_layer(xt).backward(gt)

            timers.update({("torch", "forward"): _timed(t_fwd), ("torch", "forward+backward"): _timed(t_both)})
        med = _interleaved_medians(timers, repeats)
        for part in ("forward", "forward+backward"):
            t_np, t_t = med[("numpy", part)], med.get(("torch", part))
            rows.append({
                "case": f"{case} {part}",
                "shape": "(" + ",".join(map(str, shape)) + ")",
                "numpy": 1e3 * t_np,
                "torch": None if t_t is None else 1e3 * t_t,
                "unit": "ms",
                "numpy/torch": None if t_t is None else t_np / t_t,
                "note": f"median of {repeats}, interleaved",
            })
    return rows


def _synthetic_batches(count: int, dtype=np.float32):
    rng = np.random.default_rng(1)
    return [
        (rng.standard_normal((BATCH, 1, 64, 64), dtype=np.float32).astype(dtype),
         (rng.random((BATCH, 1)) < 0.5).astype(dtype))
        for _ in range(count)
    ]


def _numpy_step():
    from numpy_nn.losses import BCEWithLogitsLoss
    from numpy_nn.models import CNN
    from numpy_nn.optim import Adam

    model = CNN(in_channels=1, out_features=1)
    opt = Adam(model.parameters(), lr=1e-3)
    crit = BCEWithLogitsLoss()

    def step(x, y):
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        opt.step()

    return step


def _torch_step():
    import torch

    from torch_ref.models import CNN

    model = CNN(in_channels=1, out_features=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.BCEWithLogitsLoss()

    def step(x, y):
        opt.zero_grad()
        crit(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()

    return step


def _epoch_rows(quick: bool) -> list[dict]:
    full = math.ceil(EPOCH_IMAGES / BATCH)
    timed = 4 if quick else full
    batches = _synthetic_batches(min(timed, 8))
    steps = {"numpy": _numpy_step()}
    if _have_torch():
        steps["torch"] = _torch_step()
    for step in steps.values():  # one warm-up step each: allocates the layers' buffers
        step(*batches[0])
    total = dict.fromkeys(steps, 0.0)
    for i in range(timed):  # the tracks alternate batch by batch, so load bursts hit both alike
        x, y = batches[i % len(batches)]
        for k, step in steps.items():
            t0 = time.perf_counter()
            step(x, y)
            total[k] += time.perf_counter() - t0
    scale = full / timed
    note = "full epoch" if timed == full else f"{timed} of {full} batches timed, x{scale:.1f} extrapolated"
    t_np, t_t = total["numpy"] * scale, (total["torch"] * scale if "torch" in total else None)
    return [{
        "case": "CNN epoch (fwd+bwd+Adam)",
        "shape": f"{EPOCH_IMAGES}x1x64x64, batch {BATCH}",
        "numpy": t_np,
        "torch": t_t,
        "unit": "s",
        "numpy/torch": None if t_t is None else t_np / t_t,
        "note": note,
    }]


def run(quick: bool) -> list[dict]:
    return _conv_rows(quick) + _densenet_layer_rows(quick) + _epoch_rows(quick)
