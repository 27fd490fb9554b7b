"""``python -m chexvision compare``: train both tracks in lockstep and measure how far apart they drift.

The two engines of ``chexvision.tracks`` (the hand-written NumPy one and the torch one, exactly as
``train`` uses them) start from one seed with the same initial weights (the torch engine's
``lockstep`` mode copies the numpy_nn model's), see the same batches (each batch, augmentation
included, is made once by the shared ``BatchLoader`` and handed to both) and the same dropout
masks (both draw them with NumPy from one (seed, epoch) generator). After every optimizer step
the command records, for every parameter (and floating buffer) tensor, the largest absolute and
relative difference between the tracks, both losses and both step times.

Step 0 is the state before the first update (where ``--perturb`` shows up); step s ≥ 1 is the
state after s updates. For a tensor with values a (NumPy) and b (torch):

    max_abs = max_i |a_i − b_i|          max_rel = max_abs / max_i |b_i|   (0 when b is all zeros)

``OUT/compare.json`` holds the configuration, these series, the timings and the verdict;
``divergence.png``, ``losses.png`` and ``timing.png`` plot them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from .config import DEFAULTS, MODELS, OPTIMIZERS, TrainConfig, parse_hidden
from .errors import UserError
from .outputs import claim_compare_outputs

HELP = "train both tracks in lockstep from one seed; record and plot how far their weights drift apart"

# Shown by --help and pulled into docs/side_by_side.md by `python -m chexvision docs`.
_EXPECT = [
    'What to expect (measured with the default recipe: synthetic 64x64 data, the 4096-1024-256-64-1 MLP, '
    'dropout 0.3, batch 64, lr 1e-3, 400 steps; exact figures vary with the data and the machine).',
    'float64: the tracks stay at rounding level, far below the 1e-9 tolerance (largest difference 3e-13) for '
    "hundreds of steps. They evaluate the same formulas; the matrix kernels (NumPy's BLAS, torch's own) only "
    "add in different orders, which moves the last of float64's ~16 digits.",
    'float32 with Adam: after the first step a few weights already differ by about 1e-4; after a few dozen '
    'steps (about 20 here) every layer climbs by orders of magnitude, to 1e-2 by step 40 and 0.1 to 0.3 by '
    'steps 200 to 400. Two effects: (1) Adam scales every update to about lr * m / (sqrt(v) + eps), roughly '
    "lr whatever the gradient's size; where a gradient is a sum of terms that nearly cancel (4e-8 against a "
    'typical 3e-3 in one first step we traced), float32 rounding changes it by a few percent, and that few '
    "percent of lr lands in the weight: Adam's normalisation amplifies rounding at small gradients; (2) "
    'training is chaotic: a small difference in the weights changes the next gradients a little, which '
    'changes the weights more, and a ReLU whose input sits within rounding of zero can be on in one track and '
    'off in the other. Neither track is wrong: the weights now differ and single-batch losses differ by up to '
    'about 0.4, yet the two loss curves in losses.png keep the same level and trend (their averages over 100 '
    'steps agree within a few percent); the tracks follow statistically equivalent trajectories.',
    'float32 with SGD has no first-step jump: differences start near 1e-8 and stay there for about 150 steps '
    'here, then grow the same chaotic way (2e-3 by step 400).',
    '--perturb LAYER:EPS nudges one weight of the NumPy track before the first step: the verdict names that '
    'tensor at step 0, and divergence.png shows the nudge spreading to the other layers through the shared '
    'batches. --threads 1 gives steadier timings on a busy machine.',
]
EXPECT = "\n\n".join(textwrap.fill(p, 96) for p in _EXPECT)

MAX_STEPS = 100_000  # a bound on the run; the default 200 steps take minutes on 2 cores

# measured: `python -m chexvision compare` with every default (float64, 200 steps, synthetic data)
DEFAULT_DURATION = ("2.8 min of CPU time: about 3 min on an idle 2-core machine, 16 min measured on a heavily "
                    "loaded one; --steps 20 takes a tenth of that")

TOLERANCE = {"float64": 1e-9, "float32": 1e-4}  # default --tolerance: rounding level per dtype
TINY = 1e-300  # relative differences of an all-zero tensor are reported as 0


def add_arguments(p) -> None:
    from .data import add_data_arguments

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXPECT
    add_data_arguments(p)
    g = p.add_argument_group("lockstep run")
    g.add_argument("--model", choices=MODELS, default="mlp", help="mlp (CheXVision-mini) or cnn (default: mlp)")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="both tracks' parameter and batch dtype (default: float64)")
    g.add_argument("--steps", type=int, default=200, metavar="N",
                   help=f"optimizer steps (default: 200; {DEFAULT_DURATION})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS.optimizer,
                   help=f"optimizer of both tracks (default: {DEFAULTS.optimizer})")
    g.add_argument("--lr", type=float, default=DEFAULTS.lr, metavar="LR", help=f"learning rate (default: {DEFAULTS.lr})")
    g.add_argument("--hidden", type=parse_hidden, default=DEFAULTS.hidden, metavar="W,W,...",
                   help=f"MLP hidden widths (default: {','.join(map(str, DEFAULTS.hidden))})")
    g.add_argument("--dropout", type=float, default=DEFAULTS.dropout, metavar="X",
                   help=f"dropout p; both tracks drop the same units (default: {DEFAULTS.dropout})")
    g.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, metavar="N",
                   help=f"mini-batch size (default: {DEFAULTS.batch_size})")
    g.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, metavar="X",
                   help=f"optimizer weight decay, weights only (default: {DEFAULTS.weight_decay})")
    g.add_argument("--label-smoothing", type=float, default=DEFAULTS.label_smoothing, metavar="X",
                   help=f"BCE label smoothing (default: {DEFAULTS.label_smoothing})")
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no augmentation (default: the training recipe's noise, brightness and contrast)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch track's device (default: cpu)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch's intra-op threads (default: torch's choice). On a busy machine 1 gives steadier "
                        "timings; NumPy's BLAS threads follow OPENBLAS_NUM_THREADS / OMP_NUM_THREADS")
    g.add_argument("--perturb", metavar="LAYER:EPS", default=None,
                   help="before training, add EPS to the first element of tensor LAYER (a parameter name such "
                        "as layers.0.weight, or a layer such as layers.0) in the NumPy track only")
    g.add_argument("--tolerance", type=float, default=None, metavar="X",
                   help="the verdict names the first tensor and step whose max |difference| exceeds this "
                        f"(default: {TOLERANCE['float64']:g} in float64, {TOLERANCE['float32']:g} in float32)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr (default: steps done, elapsed and ETA)")
    g.add_argument("--out", metavar="DIR", default="runs/compare",
                   help="where compare.json and the plots go (default: runs/compare); files of the same names "
                        "that an earlier compare did not write are refused")
    g.add_argument("--force", action="store_true",
                   help="replace same-named files in --out even if an earlier compare did not write them")


# -- the run ---------------------------------------------------------------------------------------------
def run(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("compare trains the NumPy and the torch track side by side and needs PyTorch "
                        "(pip install torch); train, evaluate and predict with the NumPy track need nothing") from None
    if not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps must be between 1 and {MAX_STEPS:,}, got {args.steps}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    tolerance = TOLERANCE[args.dtype] if args.tolerance is None else args.tolerance
    if not tolerance > 0:
        raise UserError(f"--tolerance must be positive, got {args.tolerance}")
    cfg = TrainConfig(model=args.model, dtype=args.dtype, hidden=args.hidden, dropout=args.dropout,
                      batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, scheduler="none",
                      augment=args.augment, seed=args.seed, device=args.device)
    perturb = _parse_perturb(args.perturb)
    out = Path(args.out)
    claim_compare_outputs(out, getattr(args, "force", False))  # before the (long) run: nothing of the user's is replaced

    result = lockstep(cfg, args, args.steps, perturb, tolerance, progress=not getattr(args, "no_progress", False))
    out.mkdir(parents=True, exist_ok=True)
    from numpy_nn.serialization import atomic_write

    atomic_write(out / "compare.json", lambda f: f.write(json.dumps(result, indent=1).encode()))
    from .compare_plots import plot_divergence, plot_losses, plot_timing
    plot_divergence(result, out / "divergence.png")
    plot_losses(result, out / "losses.png")
    plot_timing(result, out / "timing.png")
    print(verdict_table(result))
    print(f"wrote {out / 'compare.json'}, divergence.png, losses.png, timing.png")
    return 0


def _parse_perturb(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    name, sep, eps = text.rpartition(":")
    try:
        value = float(eps)
    except ValueError:
        value = math.nan
    if not sep or not name or not math.isfinite(value):
        raise UserError(f"--perturb takes LAYER:EPS such as layers.0.weight:1e-6, got {text!r}")
    return name, value


def lockstep(cfg: TrainConfig, args, steps: int, perturb, tolerance: float, progress: bool = False) -> dict:
    """Run both engines side by side for ``steps`` steps; return everything compare.json holds.

    With ``progress``, steps done, elapsed time and an ETA go to stderr (``StepProgress``)."""
    from .data import Augmenter, BatchLoader, data_config, open_dataset
    from .tracks import fit_standardizer, layout, load_track, model_spec

    data_cfg = data_config(args)
    ds = open_dataset(data_cfg)
    idx = ds.indices("train")
    if len(idx) == 0:
        raise UserError("the training split is empty; use more images")
    spec = model_spec(cfg.model, ds.image_size, cfg.hidden, cfg.dropout, out_features=ds.task.n_outputs)
    aug = Augmenter(cfg.flip, cfg.noise_std, cfg.brightness, cfg.contrast) if cfg.augment else None
    loader = BatchLoader(ds, idx, cfg.batch_size, fit_standardizer(spec, ds.images, idx), shuffle=True, augmenter=aug,
                         seed=cfg.seed, layout=layout(spec), dtype=np.dtype(cfg.dtype))
    per_epoch = -(-len(idx) // cfg.batch_size)

    np_engine = load_track("numpy").Engine(spec, dtype=cfg.dtype)
    torch_track = load_track("torch")  # a UserError when torch is not installed
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t_engine = torch_track.Engine(spec, dtype=cfg.dtype, device=cfg.device, lockstep=True)
    for e in (np_engine, t_engine):
        e.build_model(cfg.seed)
        e.setup_training(cfg, per_epoch, None)
    np_tensors, t_tensors = _tensors(np_engine.model, t_engine.model)
    names = list(np_tensors)
    first = _differences(np_tensors, t_tensors)
    if any(v != 0 for v, _ in first.values()):
        raise RuntimeError("lockstep engines start from different weights: " + ", ".join(
            f"{k} {v:.3g}" for k, (v, _) in first.items() if v != 0))
    if perturb is not None:
        _nudge(np_tensors, *perturb)

    max_abs = {k: [] for k in names}
    max_rel = {k: [] for k in names}
    losses = {"numpy": [], "torch": []}
    seconds = {"numpy": [], "torch": []}

    def record():
        for k, (a, r) in _differences(np_tensors, t_tensors).items():
            max_abs[k].append(a)
            max_rel[k].append(r)

    record()  # step 0: before the first update
    bar = StepProgress(steps, "compare") if progress else None
    step, epoch = 0, 0
    while step < steps:
        loader.set_epoch(epoch)
        for e in (np_engine, t_engine):
            e.begin_epoch(cfg.seed, epoch)
        for x, y in loader:
            for name, engine in (("numpy", np_engine), ("torch", t_engine)):
                t0 = time.perf_counter()
                data_loss, reg_loss = engine.train_step(x, y)
                seconds[name].append(time.perf_counter() - t0)
                losses[name].append(data_loss + reg_loss)
            step += 1
            record()
            if bar is not None:
                bar.update(step)
            if step == steps:
                break
        epoch += 1

    if bar is not None:
        bar.close()
    result = {
        "config": {
            "model": cfg.model, "spec": spec, "dtype": cfg.dtype, "steps": steps, "optimizer": cfg.optimizer,
            "lr": cfg.lr, "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay,
            "label_smoothing": cfg.label_smoothing, "augment": cfg.augment, "seed": cfg.seed,
            "device": cfg.device, "torch_threads": torch.get_num_threads(), "data": data_cfg, "train_images": int(len(idx)),
            "perturb": None if perturb is None else {"tensor": perturb[0], "eps": perturb[1]},
            "tolerance": tolerance,
        },
        "tensors": names,
        "max_abs": max_abs,  # tensor -> [step 0, step 1, ..., step N]
        "max_rel": max_rel,
        "loss": losses,  # track -> [after step 1, ..., after step N] (data + regularisation loss)
        "seconds": seconds,  # track -> wall time of each step
    }
    result["verdict"] = verdict(result)
    return _json_safe(result)


class StepProgress:
    """Steps done, elapsed time and ETA on stderr: one line rewritten in place on a terminal, a
    new line at every tenth of the run otherwise (logs stay short)."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.stream = total, label, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.shown, self.last = 0, 0.0

    def line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - done) if done else math.nan
        return (f"{self.label}: step {done}/{self.total} ({100 * done / self.total:.0f}%), {elapsed:.0f} s elapsed, "
                f"ETA {eta:.0f} s")

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self.last >= 0.5 or done == self.total:
                self.stream.write("\r" + self.line(done) + " " * 4)
                self.stream.flush()
                self.last = now
        elif done * 10 // self.total > self.shown or done == self.total:
            self.shown = done * 10 // self.total
            print(self.line(done), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _tensors(np_model, t_model) -> tuple[dict, dict]:
    """Live views of every parameter and floating buffer, by torch's name, in both tracks."""
    np_t = dict(np_model.named_parameters())
    np_b = {k: b for k, b in np_model.named_buffers() if np.issubdtype(np.asarray(b).dtype, np.floating)}
    t_p = dict(t_model.named_parameters())
    t_b = {k: b for k, b in t_model.named_buffers() if b.is_floating_point()}
    np_all = {**{k: ("param", p) for k, p in np_t.items()}, **{k: ("buffer", (np_model, k)) for k in np_b}}
    t_all = {**t_p, **t_b}
    if list(np_all) != list(t_all):
        raise RuntimeError(f"the tracks' tensors differ: {list(np_all)} vs {list(t_all)}")
    return np_all, t_all


def _np_value(entry) -> np.ndarray:
    kind, obj = entry
    if kind == "param":
        return obj.data
    model, name = obj  # buffers are replaced (not updated in place), so look them up every time
    return dict(model.named_buffers())[name]


def _differences(np_tensors: dict, t_tensors: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for k, entry in np_tensors.items():
        a = _np_value(entry)
        b = t_tensors[k].detach().cpu().numpy()
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        out[k] = (diff, diff / scale if scale > TINY else 0.0)
    return out


def _nudge(np_tensors: dict, name: str, eps: float) -> None:
    """Add ``eps`` to the first element of tensor ``name`` (or of layer ``name``'s first tensor)."""
    if name not in np_tensors:
        inside = [k for k in np_tensors if k.startswith(name + ".")]
        if not inside:
            raise UserError(f"--perturb: no tensor or layer {name!r}; choose from {', '.join(np_tensors)}")
        name = inside[0]
    kind, obj = np_tensors[name]
    if kind != "param":
        raise UserError(f"--perturb: {name} is a buffer; nudge a parameter")
    obj.data.reshape(-1)[0] += eps


def verdict(result: dict) -> dict:
    """Largest absolute and relative differences (tensor, step), the first step over the tolerance,
    loss agreement and the time ratio."""
    tol = result["config"]["tolerance"]
    out = {}
    for key in ("max_abs", "max_rel"):
        best = (-1.0, None, None)
        for name, series in result[key].items():
            s = int(np.argmax(series))
            if series[s] > best[0]:
                best = (float(series[s]), name, s)
        out[key] = {"value": best[0], "tensor": best[1], "step": best[2]}
    first = None
    for step in range(len(next(iter(result["max_abs"].values())))):
        # a non-finite difference (one track blew up) counts as over the tolerance
        over = [(result["max_abs"][k][step], k) for k in result["tensors"] if not result["max_abs"][k][step] <= tol]
        if over:
            v, k = max(over, key=lambda vk: (not math.isfinite(vk[0]), vk[0]))
            first = {"tensor": k, "step": step, "value": v}
            break
    out["first_over_tolerance"] = first
    ln, lt = np.asarray(result["loss"]["numpy"]), np.asarray(result["loss"]["torch"])
    out["max_loss_diff"] = float(np.max(np.abs(ln - lt))) if ln.size else 0.0
    out["final_loss"] = {"numpy": float(ln[-1]), "torch": float(lt[-1])} if ln.size else None
    med = {k: float(np.median(v[1:] if len(v) > 1 else v)) for k, v in result["seconds"].items()}
    out["median_step_seconds"] = med  # the first step (warm-up: allocations, thread pools) left out
    out["time_ratio_numpy_over_torch"] = med["numpy"] / med["torch"] if med["torch"] > 0 else math.inf
    return out


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def verdict_table(result: dict) -> str:
    c, v = result["config"], result["verdict"]
    first = v["first_over_tolerance"]
    if first is None:
        over = f"none: every tensor stays within {c['tolerance']:g} for all {c['steps']} steps"
    else:
        over = f"{first['tensor']} at step {first['step']} (|diff| {first['value']:.3g} > {c['tolerance']:g})"
    med, ratio = v["median_step_seconds"], v["time_ratio_numpy_over_torch"]
    rows = [
        ("largest |numpy - torch|", f"{v['max_abs']['value']:.3g}  ({v['max_abs']['tensor']}, step "
                                     f"{v['max_abs']['step']})"),
        ("largest relative difference", f"{v['max_rel']['value']:.3g}  ({v['max_rel']['tensor']}, step "
                                         f"{v['max_rel']['step']})"),
        ("first over tolerance", over),
        ("final loss numpy / torch", f"{v['final_loss']['numpy']:.6f} / {v['final_loss']['torch']:.6f}  "
                                      f"(largest |diff| over the run {v['max_loss_diff']:.3g})"),
        ("median step time numpy / torch", f"{med['numpy'] * 1e3:.2f} ms / {med['torch'] * 1e3:.2f} ms  "
                                            f"(numpy/torch = {ratio:.2f}x)" if ratio is not None else "n/a"),
    ]
    perturb = c["perturb"]
    head = (f"compare: {c['model']} {c['dtype']}, {c['steps']} steps, {c['optimizer']} lr={c['lr']:g}, batch "
            f"{c['batch_size']}, {c['data']['dataset']} ({c['train_images']} training images)"
            + (f", perturbed {perturb['tensor']} by {perturb['eps']:g}" if perturb else ""))
    width = max(len(r[0]) for r in rows)
    return "\n".join([head] + [f"  {k.ljust(width)}  {val}" for k, val in rows])
