"""Bench section ``densenet``: numpy_nn's densenet121 against torch_ref's, float32, same process.

Rows:

* inference, batch 1 at 224² (eval mode; torch under ``no_grad``): seconds per image, the ratio, and
  the targets (NumPy ≤ 2× torch and < 1 s per image);
* one training step, batch 16 at 224² (forward, BCE loss, backward, Adam): seconds, the ratio, the
  target (NumPy ≤ 3× torch);
* peak memory of that training step: the peak resident set (``VmHWM``) of a fresh subprocess
  that builds the model and runs two steps, minus the same process's peak before the first step,
  per track (same interpreter, same thread settings); measured first, before this process grows;
* batch assembly at 224² (gather 16 uint8 images from a memory-mapped cache, augment, the fixed
  x / 255 standardisation, (N, 1, H, W) float32), to set against the training step;
* a profile of the NumPy training step: seconds per kind of layer (1×1 convolutions, 3×3, the stem,
  BatchNorm, ReLU, pooling, the block buffer and Adam), each leaf module's forward and backward timed.

Timings are medians over rounds that alternate the two tracks (2 shared cores: single runs are
noisy). ``--quick`` uses batch 4 for the training step and fewer rounds (the rows say so).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from .conv import _have_torch, _interleaved_medians, _timed

TITLE = "densenet: numpy_nn densenet121 vs torch_ref, float32, 224x224"

SIZE = 224
TRAIN_BATCH = 16
INFER_TARGET, INFER_LIMIT_S, TRAIN_TARGET = 2.0, 1.0, 3.0


def _numpy_step(batch: int, size: int = SIZE):
    from numpy_nn import models
    from numpy_nn.losses import BCEWithLogitsLoss
    from numpy_nn.optim import Adam

    model = models.densenet121(num_classes=1)
    model.features.conv0.needs_input_grad = False  # the input is data, as in the app
    opt, crit = Adam(model.parameters(), lr=1e-4), BCEWithLogitsLoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y = (rng.random((batch, 1)) < 0.5).astype(np.float32)

    def step():
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        opt.step()

    return model, step


def _torch_step(batch: int, size: int = SIZE):
    import torch

    from torch_ref import models

    model = models.densenet121(num_classes=1)
    opt, crit = torch.optim.Adam(model.parameters(), lr=1e-4), torch.nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = (torch.rand(batch, 1, generator=g) < 0.5).float()

    def step():
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()

    return model, step


def _inference_rows(quick: bool, torch_ok: bool) -> list[dict]:
    from numpy_nn import models

    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
    np_model = models.densenet121().eval()
    timers = {"numpy": _timed(lambda: np_model(x))}
    if torch_ok:
        import torch

        from torch_ref import models as t_models

        t_model = t_models.densenet121().eval()
        xt = torch.from_numpy(x)

        def t_infer():
            with torch.no_grad():
                t_model(xt)

        timers["torch"] = _timed(t_infer)
    med = _interleaved_medians(timers, 3 if quick else 7)
    row = {"case": "inference b1 224^2", "numpy_s": med["numpy"]}
    if torch_ok:
        ratio = med["numpy"] / med["torch"]
        row.update(torch_s=med["torch"], ratio=ratio, target=f"<= {INFER_TARGET:g}x and < {INFER_LIMIT_S:g} s",
                   met="met" if ratio <= INFER_TARGET and med["numpy"] < INFER_LIMIT_S else "missed")
    return [row]


def _training_rows(quick: bool, torch_ok: bool) -> list[dict]:
    batch = 4 if quick else TRAIN_BATCH
    _, np_step = _numpy_step(batch)
    timers = {"numpy": _timed(np_step)}
    if torch_ok:
        _, t_step = _torch_step(batch)
        timers["torch"] = _timed(t_step)
    med = _interleaved_medians(timers, 1 if quick else 3)
    row = {"case": f"train step b{batch} 224^2" + (" (quick: not b16)" if quick else ""), "numpy_s": med["numpy"]}
    if torch_ok:
        ratio = med["numpy"] / med["torch"]
        row.update(torch_s=med["torch"], ratio=ratio, target=f"<= {TRAIN_TARGET:g}x",
                   met="met" if ratio <= TRAIN_TARGET else "missed")
    return [row]


_MEMORY_SCRIPT = """
import json, resource, sys
from chexvision.bench.densenet import _numpy_step, _torch_step

def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss survives exec, so it would start at the parent's peak)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

model, step = (_numpy_step if sys.argv[1] == "numpy" else _torch_step)(int(sys.argv[2]))
before = peak_mb()
step(); step()
print(json.dumps({"before_mb": before, "peak_mb": peak_mb()}))
"""


def _memory_rows(quick: bool, torch_ok: bool) -> list[dict]:
    batch = 4 if quick else TRAIN_BATCH
    rows = []
    for track in ("numpy", "torch") if torch_ok else ("numpy",):
        res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, track, str(batch)], capture_output=True, text=True,
                             timeout=1800)
        if res.returncode != 0:
            rows.append({"case": f"peak memory {track} train step b{batch}", "error": res.stderr.strip()[-200:]})
            continue
        m = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append({"case": f"peak memory {track} train step b{batch}", f"{track}_MB": m["peak_mb"] - m["before_mb"],
                     "process_peak_MB": m["peak_mb"]})
    if len(rows) == 2 and "numpy_MB" in rows[0] and rows[1].get("torch_MB", 0) > 0:
        rows.append({"case": "peak memory numpy / torch", "ratio": rows[0]["numpy_MB"] / rows[1]["torch_MB"]})
    return rows


def _assembly_rows(quick: bool) -> list[dict]:
    import tempfile
    from pathlib import Path

    from ..data import Augmenter, BatchLoader
    from ..densenet import pixel_standardizer

    class _Cache:  # what BatchLoader reads: .images (a memmap here, as the real cache) and .labels
        pass

    n = 128 if quick else 512
    with tempfile.TemporaryDirectory() as tmp:
        images = np.lib.format.open_memmap(Path(tmp) / "images.npy", mode="w+", dtype=np.uint8, shape=(n, SIZE, SIZE))
        images[:] = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
        images.flush()
        ds = _Cache()
        ds.images, ds.labels = np.load(Path(tmp) / "images.npy", mmap_mode="r"), np.zeros(n, np.int64)
        loader = BatchLoader(ds, np.arange(n), TRAIN_BATCH, pixel_standardizer(SIZE), shuffle=True,
                             augmenter=Augmenter(False, 0.02, 0.1, 0.1), layout="nchw")
        t0 = time.perf_counter()
        batches = sum(1 for _ in loader)
        per_batch = (time.perf_counter() - t0) / batches
        del ds, images, loader
    return [{"case": f"batch assembly b{TRAIN_BATCH} 224^2 (memmap, augment, standardise)", "numpy_s": per_batch}]


def _kind(name: str, module) -> str:
    from numpy_nn.conv import Conv2d

    t = type(module).__name__
    if isinstance(module, Conv2d):
        return "conv0 7x7" if module.kernel_size == (7, 7) else f"conv {module.kernel_size[0]}x{module.kernel_size[1]}"
    return {"BatchNorm2d": "batchnorm", "ReLU": "relu", "MaxPool2d": "pool", "AvgPool2d": "pool",
            "Linear": "classifier", "Dropout": "dropout"}.get(t, t)


def profile_numpy_step(batch: int, size: int = SIZE) -> list[dict]:
    """Seconds per layer kind in one NumPy training step (leaf modules' forward + backward)."""
    model, step = _numpy_step(batch, size)
    step()  # warm the buffers
    spent: dict[str, float] = {}
    for name, m in model.named_modules():
        if m._modules:  # composite: its time is its children's, plus the block buffer (below)
            continue
        kind = _kind(name, m)
        for method in ("forward", "backward"):
            inner = getattr(m, method)

            def timed(*a, _inner=inner, _key=f"{kind} {method}"):
                t0 = time.perf_counter()
                out = _inner(*a)
                spent[_key] = spent.get(_key, 0.0) + time.perf_counter() - t0
                return out

            object.__setattr__(m, method, timed)
    t0 = time.perf_counter()
    step()
    total = time.perf_counter() - t0
    leaves = sum(spent.values())
    rows = [{"profile": k, "seconds": v, "share": v / total} for k, v in sorted(spent.items(), key=lambda kv: -kv[1])]
    rows.append({"profile": "rest: block buffer, global pool, loss, Adam", "seconds": total - leaves,
                 "share": (total - leaves) / total})
    rows.append({"profile": f"total train step b{batch} {size}^2", "seconds": total, "share": 1.0})
    return rows


def run(quick: bool = False) -> list[dict]:
    torch_ok = _have_torch()
    memory = _memory_rows(quick, torch_ok)  # first: subprocesses, while this process is still small
    rows = _inference_rows(quick, torch_ok) + _training_rows(quick, torch_ok) + memory
    rows += _assembly_rows(quick)
    for r in profile_numpy_step(4 if quick else TRAIN_BATCH):
        rows.append({"case": "numpy profile: " + r["profile"], "numpy_s": r["seconds"], "share": r["share"]})
    return rows
