"""The data layer's front door: command-line options, a JSON-able config, and ``open_dataset``.

``add_data_arguments(parser)`` adds the options, ``data_config(args)`` turns them into a plain
dict (saved with a run so ``evaluate`` reopens the very same data), ``open_dataset(cfg)`` builds
or loads the cache and returns a ``CachedDataset`` with patient-disjoint train/val/test splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..validate import check_seed
from . import cache as cache_mod
from .listing import Listing, apply_limit, confine
from .splits import SPLITS, assign_splits
from .synthetic import FINDINGS as SYNTHETIC_FINDINGS
from .synthetic import make_synthetic

TASKS = ("binary", "findings")  # chexvision.tasks.TASKS (not imported: the data layer stands alone)

DATASETS = ("synthetic", "folder", "nih", "chexpert", "rsna")
VIEWS = ("all", "PA", "AP")
DEFAULTS = {
    "dataset": "synthetic", "data_dir": None, "cache": None, "image_size": 64, "val_fraction": 0.1,
    "test_fraction": 0.2, "limit": None, "view": "all", "frontal_only": False, "uncertain": "ignore",
    "synthetic_size": 2000, "workers": None, "seed": 0, "task": "binary",
}

def available_cpus() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def add_data_arguments(parser) -> None:
    """The data options shared by ``train``, ``evaluate`` and ``preprocess``."""
    g = parser.add_argument_group("data")
    g.add_argument("--task", choices=TASKS, default="binary",
                   help="binary (default: one output, normal vs abnormal) or findings (one output per finding: "
                        "NIH's 14, CheXpert's 14, the synthetic generator's 3, or a folder CSV's 0/1 columns)")
    g.add_argument("--dataset", choices=DATASETS, default="synthetic",
                   help="synthetic (default: generated offline, no download), folder (normal/ + abnormal/ or a "
                        "CSV path,label[,patient]), nih (ChestX-ray14, Kaggle or NIH layout), chexpert "
                        "(CheXpert-v1.0-small), rsna (RSNA Pneumonia Detection Challenge, DICOM: needs the dicom "
                        "extra)")
    g.add_argument("--data-dir", metavar="DIR", help="where the dataset lies (not needed for synthetic)")
    g.add_argument("--cache", metavar="DIR",
                   help="preprocessing cache folder (default: ./cache/<dataset>-<size>px-<hash of the settings>; "
                        "synthetic data are never cached)")
    g.add_argument("--image-size", type=int, default=64, metavar="S", help="images are resized to S×S (default 64)")
    g.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="share of the non-test images carved by patient as validation (default 0.1)")
    g.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="share carved by patient as test when the dataset has no official test split (default 0.2)")
    g.add_argument("--limit", type=int, metavar="N", help="use a stratified subset of N images (quick experiments)")
    g.add_argument("--view", choices=VIEWS, default="all", help="keep only PA or AP views (nih, chexpert)")
    g.add_argument("--frontal-only", action="store_true", help="chexpert: drop lateral views")
    g.add_argument("--uncertain", choices=("ignore", "positive", "negative"), default="ignore",
                   help="chexpert: images whose only findings are uncertain (-1) are left out (ignore, default), "
                        "counted abnormal (positive) or normal (negative); with --task findings, per finding: "
                        "masked out of loss and metrics (U-Ignore), 1 (U-Ones) or 0 (U-Zeros)")
    g.add_argument("--synthetic-size", type=int, default=2000, metavar="N",
                   help="number of synthetic images (default 2000)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="preprocessing processes (default and maximum: the CPU cores available)")
    g.add_argument("--seed", type=int, default=0, help="seeds the splits and the synthetic data (default 0)")


def _normalise(cfg: dict) -> dict:
    """Defaults filled in and every value checked; a UserError names the first bad one."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown data setting(s): {', '.join(unknown)}")
    c = dict(DEFAULTS, **{k: v for k, v in cfg.items() if v is not None or k in ("data_dir", "cache")})
    if c["task"] not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {c['task']!r}")
    if c["task"] == "findings" and c["dataset"] == "rsna":
        raise UserError("--task findings: rsna has one label (pneumonia); use --task binary")
    if c["dataset"] not in DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {c['dataset']!r}")
    if not isinstance(c["image_size"], int) or not 4 <= c["image_size"] <= 1024:
        raise UserError(f"--image-size must be an integer from 4 to 1024, got {c['image_size']!r}")
    for k in ("val_fraction", "test_fraction"):
        if isinstance(c[k], bool) or not isinstance(c[k], (int, float)) or not 0.0 < float(c[k]) < 1.0:
            raise UserError(f"--{k.replace('_', '-')} must be between 0 and 1 (exclusive), got {c[k]}")
    if c["limit"] is not None and c["limit"] < 1:
        raise UserError(f"--limit must be a positive number of images, got {c['limit']}")
    for k in ("limit", "synthetic_size", "workers", "seed"):
        if c[k] is not None and (isinstance(c[k], bool) or not isinstance(c[k], (int, np.integer))):
            raise UserError(f"--{k.replace('_', '-')} must be an integer, got {c[k]!r}")
    if c["synthetic_size"] < 10:
        raise UserError(f"--synthetic-size must be at least 10, got {c['synthetic_size']}")
    check_seed(c["seed"])  # before any generator is seeded with it
    if c["view"] not in VIEWS:
        raise UserError(f"--view must be one of {', '.join(VIEWS)}, got {c['view']!r}")
    if c["workers"] is not None and c["workers"] < 1:
        raise UserError(f"--workers must be >= 1, got {c['workers']}")
    if c["dataset"] != "synthetic" and not c["data_dir"]:
        raise UserError(f"--dataset {c['dataset']} needs --data-dir (the folder holding the images and labels)")
    return c


def cache_settings(cfg: dict) -> dict:
    """What decides the cached rows and pixels; a cache refuses to open with other values."""
    s = {"dataset": cfg["dataset"], "data_dir": cfg["data_dir"], "image_size": cfg["image_size"],
         "decoder": cache_mod.DECODER, "limit": cfg["limit"]}
    if cfg["limit"] is not None:
        s["limit_seed"] = cfg["seed"]  # which subset is drawn
    if cfg["dataset"] in ("nih", "chexpert"):
        s["view"] = cfg["view"]
    if cfg["dataset"] == "chexpert":
        s["frontal_only"], s["uncertain"] = bool(cfg["frontal_only"]), cfg["uncertain"]
    if cfg.get("task", "binary") != "binary":  # binary caches keep the settings (and folder names) they had
        s["task"] = cfg["task"]
    return s


def split_settings(cfg: dict) -> dict:
    return {"val_fraction": float(cfg["val_fraction"]), "test_fraction": float(cfg["test_fraction"]),
            "seed": int(cfg["seed"])}


def default_cache_dir(cfg: dict) -> Path:
    digest = hashlib.sha256(json.dumps(cache_settings(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return Path("cache") / f"{cfg['dataset']}-{cfg['image_size']}px-{digest}"


def reopen_config(saved: dict, data_dir: str | None = None, cache: str | None = None) -> dict:
    """The data config of a saved run, ready to re-open its data (``evaluate``, ``--resume``).

    Paths stored in a checkpoint are hints for reading only: a tampered ``config.json`` must not
    make us create files where the user never asked. So the cache folder is

    * ``cache`` (the user's ``--cache`` on this command line), created if needed; else
    * the saved folder, only if it already holds a complete cache made with these settings (it is
      then only read: no lock, no file created); else
    * the default folder under ``./cache`` (as ``data_config`` picks it), built there.

    ``data_dir`` (the user's ``--data-dir``) replaces the saved data folder; images are only read.
    """
    cfg = dict(saved)
    if data_dir is not None:
        cfg["data_dir"] = str(Path(data_dir).expanduser().resolve())
    c = _normalise(cfg)
    if c["dataset"] == "synthetic":
        return dict(c, cache=None)
    if cache is not None:
        return dict(c, cache=str(Path(cache).expanduser().resolve()))
    saved_cache = c.get("cache")
    if saved_cache:
        try:
            m = cache_mod.read_manifest(Path(saved_cache))
        except (UserError, OSError):
            m = None
        if m is not None and m.get("state") == "complete" and m.get("settings") == cache_settings(c):
            return dict(c, cache=str(saved_cache))
    return dict(c, cache=str(default_cache_dir(c).resolve()))


def data_config(args) -> dict:
    """The parsed options as a JSON-able dict, paths made absolute, the cache folder decided."""
    cfg = {k: getattr(args, k, DEFAULTS[k]) for k in DEFAULTS}
    c = _normalise(cfg)
    if c["data_dir"]:
        c["data_dir"] = str(Path(c["data_dir"]).expanduser().resolve())
    if c["dataset"] == "synthetic":
        c["cache"] = None  # generated in memory, never cached
    else:
        c["cache"] = str(Path(c["cache"] or default_cache_dir(c)).expanduser().resolve())
    return c


class CachedDataset:
    """Images, labels, patients and a patient-disjoint split, ready for ``BatchLoader``.

    Attributes:
        images: (N, H, W) uint8; a read-only memmap of the cache for real data.
        labels: (N,) int64, 0 normal / 1 abnormal (what splits are stratified by).
        task: the ``chexvision.tasks.Task`` (output names); binary unless ``findings`` is given.
        targets: (N, K) int64, what the model learns: 1 / 0 / -1 (masked) per output; the binary
            task's is ``labels`` as one column.
        patients: (N,) str.
        splits: (N,) str in {"train", "val", "test"}.
        paths: (N,) str, relative to ``root`` (``root / path`` is the source file).
        image_size: S.
        name: the dataset kind; root: the data folder; cache_dir: the cache folder (or None);
        notes: where the split comes from, filters, problems found; counts: from the build.
    """

    def __init__(self, images, labels, patients, splits, paths, *, name: str, root=None, notes=(),
                 cache_dir=None, counts=None, config=None, findings=None, finding_names=()):
        from ..tasks import BINARY_TASK, FINDINGS, Task

        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        if findings is None:
            self.task, self.targets = BINARY_TASK, self.labels.reshape(-1, 1)
        else:
            self.task = Task(FINDINGS, tuple(finding_names))
            self.targets = np.asarray(findings, dtype=np.int64).reshape(len(self.labels), self.task.n_outputs)
        self.patients = np.asarray(patients).astype(str)
        self.splits = np.asarray(splits).astype(str)
        self.paths = np.asarray(paths).astype(str)
        n = len(self.labels)
        if not (images.shape[0] == n == len(self.patients) == len(self.splits) == len(self.paths)):
            raise ValueError("images, labels, patients, splits and paths must have one row per image")
        self.image_size = int(images.shape[1])
        self.name, self.root, self.cache_dir = name, root, cache_dir
        self.notes, self.counts, self.config = list(notes), dict(counts or {}), dict(config or {})

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, split: str) -> np.ndarray:
        """Rows of ``split`` ("train", "val" or "test") as sorted int64; UserError if empty."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        idx = np.flatnonzero(self.splits == split).astype(np.int64)
        if idx.size == 0:
            raise UserError(f"the {split} split of the {self.name} dataset is empty ({len(self):,} images in all); "
                            f"use more data (--limit) or a larger --{'val' if split == 'val' else 'test'}-fraction")
        return idx

    def split_summary(self) -> dict[str, dict]:
        """{split: {"images", "patients", "abnormal", "abnormal_rate"}} (JSON-able)."""
        out = {}
        for s in SPLITS:
            m = self.splits == s
            k = int(m.sum())
            pos = int(self.labels[m].sum())
            out[s] = {"images": k, "patients": int(len(np.unique(self.patients[m]))), "abnormal": pos,
                      "abnormal_rate": pos / k if k else float("nan")}
        return out

    def check_splits(self) -> None:
        """UserError if a split is empty or holds one class only (no ROC-AUC, no threshold)."""
        for s, d in self.split_summary().items():
            if d["images"] == 0:
                self.indices(s)  # raises with the message
            if d["abnormal"] in (0, d["images"]):
                only = "abnormal" if d["abnormal"] else "normal"
                raise UserError(f"the {s} split of the {self.name} dataset has only {only} images ({d['images']:,}); "
                                "a one-class split has no ROC-AUC: use more data (--limit) or another --seed")

    def describe(self) -> str:
        """Counts and abnormal rates per split, then where the data and the split come from."""
        head = (f"dataset {self.name}: {len(self):,} images of {len(np.unique(self.patients)):,} patients, "
                f"{self.image_size}x{self.image_size}")
        lines = [head + (f", cache {self.cache_dir}" if self.cache_dir else "")]
        lines.append(f"  {'split':<6} {'images':>9} {'patients':>9} {'abnormal':>9}")
        tot = {"images": 0, "patients": len(np.unique(self.patients)), "abnormal": 0}
        for s, d in self.split_summary().items():
            rate = f"{100 * d['abnormal_rate']:.1f}%" if d["images"] else "-"
            lines.append(f"  {s:<6} {d['images']:>9,} {d['patients']:>9,} {rate:>9}")
            tot["images"] += d["images"]
            tot["abnormal"] += d["abnormal"]
        rate = f"{100 * tot['abnormal'] / max(1, tot['images']):.1f}%"
        lines.append(f"  {'total':<6} {tot['images']:>9,} {tot['patients']:>9,} {rate:>9}")
        if not self.task.is_binary:  # one line per finding: prevalence per split (masked entries left out)
            width = max(len(n) for n in self.task.outputs)
            lines.append(f"  {'finding':<{width}} " + " ".join(f"{s:>9}" for s in SPLITS) + "   masked")
            for j, name in enumerate(self.task.outputs):
                cells = []
                for s in SPLITS:
                    y = self.targets[self.splits == s, j]
                    known = int((y >= 0).sum())
                    cells.append(f"{100 * (y == 1).sum() / known:.1f}%" if known else "-")
                lines.append(f"  {name:<{width}} " + " ".join(f"{c:>9}" for c in cells)
                             + f" {int((self.targets[:, j] < 0).sum()):>8,}")
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CachedDataset({self.name!r}, n={len(self)}, image_size={self.image_size})"


@functools.lru_cache(maxsize=4)
def _synthetic(n: int, size: int, seed: int):
    arrays = make_synthetic(n, size, seed, with_findings=True)
    for a in arrays:
        a.setflags(write=False)  # shared between callers: nobody may change them
    return arrays


def _listing(cfg: dict) -> Listing:
    from .chexpert import list_chexpert
    from .folder import list_folder
    from .nih import list_nih
    from .rsna import list_rsna

    task = cfg.get("task", "binary")
    if cfg["dataset"] == "nih":
        listing = list_nih(cfg["data_dir"], view=cfg["view"], task=task)
    elif cfg["dataset"] == "chexpert":
        listing = list_chexpert(cfg["data_dir"], cfg["uncertain"], cfg["frontal_only"], cfg["view"], task=task)
    elif cfg["dataset"] == "rsna":
        listing = list_rsna(cfg["data_dir"])
    else:
        listing = list_folder(cfg["data_dir"], task=task)
    # Whatever the dataset, no image path may lead out of --data-dir (symlinks resolved).
    return apply_limit(confine(listing), cfg["limit"], cfg["seed"])


def _split_note(cfg: dict, official: bool) -> str:
    vf, tf, seed = cfg["val_fraction"], cfg["test_fraction"], cfg["seed"]
    if official:
        return f"split (seed {seed}): official test set; validation = {vf:.0%} of the rest, carved by patient"
    return (f"split (seed {seed}): test = {tf:.0%} of all images, validation = {vf:.0%} of the rest, both carved "
            "by patient, stratified by abnormal share")


def open_dataset(cfg: dict, progress: bool = True, chunk_size: int | None = None,
                 check_splits: bool = True) -> CachedDataset:
    """Build or load the data described by ``cfg`` (from ``data_config``; missing keys default).

    Real datasets go through the preprocessing cache (``cfg["cache"]``): built on first use
    (in parallel, resumable), reused afterwards without touching the source images. Synthetic
    data are generated in memory. Splits are computed from the cached index with the config's
    fractions and seed. Raises UserError for bad input, including an empty or one-class split.

    Args:
        progress: show a progress bar and status lines on stderr.
        chunk_size: images per resumable chunk when a new cache is planned (default: automatic).
        check_splits: refuse an empty or one-class split (False for external evaluation, which
            scores every image and ignores the split, and for ``preprocess``, which only warns).
    """
    c = _normalise(cfg)
    if c["dataset"] == "synthetic":
        images, labels, patients, paths, findings = _synthetic(c["synthetic_size"], c["image_size"], c["seed"])
        splits = assign_splits(labels, patients, None, c["val_fraction"], c["test_fraction"], c["seed"])
        notes = [f"synthetic X-ray-like images generated in memory (seed {c['seed']}); abnormal = opacities, "
                 "effusion or cardiomegaly", _split_note(c, official=False)]
        extra = {"findings": findings, "finding_names": SYNTHETIC_FINDINGS} if c["task"] == "findings" else {}
        ds = CachedDataset(images, labels, patients, splits, paths, name="synthetic", notes=notes, config=c, **extra)
    else:
        if c["data_dir"]:
            c["data_dir"] = str(Path(c["data_dir"]).expanduser().resolve())
        cache_dir = Path(c["cache"] or default_cache_dir(c))
        cpus = available_cpus()
        workers = c["workers"] or cpus
        if workers > cpus:
            print(f"--workers {workers}: only {cpus} CPU core{'s' if cpus > 1 else ''} available; using {cpus} "
                  "process" + ("es" if cpus > 1 else ""), file=sys.stderr)
            workers = cpus
        contents = cache_mod.prepare(cache_dir, cache_settings(c), lambda: _listing(c), split_settings(c),
                                     workers=workers, progress=progress, chunk_size=chunk_size)
        m = contents.manifest
        official = m["split_source"] == "official"
        # Splits are recomputed on every open (well under a second for 112k images): a new seed or
        # fraction needs no new cache, and the split always follows this code. The index's split
        # column is the one made with the build's settings; official test rows are "test" in it.
        test_mask = contents.splits == "test" if official else None
        splits = assign_splits(contents.labels, contents.patients, test_mask, c["val_fraction"],
                               c["test_fraction"], c["seed"])
        counts = m.get("counts", {})
        notes = list(m.get("notes", []))
        if counts.get("bad"):
            notes.append(f"{counts['bad']:,} files could not be decoded and were skipped")
        report_rows = m.get("report_rows", 0)
        if report_rows:
            notes.append(f"report of {report_rows:,} left-out files: {Path(cache_dir).resolve() / cache_mod.REPORT}")
        notes.append(_split_note(c, official))
        if c["task"] == "findings" and contents.findings is None:
            raise UserError(f"--cache {cache_dir} holds no finding columns (a binary cache); use another --cache")
        extra = ({"findings": contents.findings, "finding_names": contents.finding_names}
                 if c["task"] == "findings" else {})
        ds = CachedDataset(contents.images, contents.labels, contents.patients, splits, contents.paths,
                           name=c["dataset"], root=Path(m["root"]), notes=notes,
                           cache_dir=Path(cache_dir).resolve(), counts=counts, config=c, **extra)
    if check_splits:
        ds.check_splits()
    return ds
