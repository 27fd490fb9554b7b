"""``python -m chexvision preprocess``: decode a dataset once into the memory-mapped cache.

Parallel over processes (at most one per CPU core), resumable after a kill (run the same command
again), a no-op when the cache is complete. A progress bar is drawn only when stderr is a
terminal. Prints the split table, then a summary: images decoded, files skipped by reason,
listed but missing, on disk but unlisted, and where ``bad_files.csv`` (every left-out file with
its reason) is. ``train`` and ``evaluate`` build the cache themselves when it is missing; this
command does it up front (e.g. once on Kaggle before trying many models).
"""

from __future__ import annotations

from pathlib import Path

from .cache import REPORT, read_manifest
from .dataset import add_data_arguments, data_config, open_dataset

HELP = "decode a dataset once into the memory-mapped uint8 cache that train/evaluate read (resumable)"
MAX_CHUNK = 4096

# counts key -> how the summary names the images left out by the listing rules
_RULES = (
    ("uncertain_only", "only uncertain findings (--uncertain ignore)"),
    ("unlabelled", "no finding and no 'No Finding'"),
    ("filtered", "filtered out (--view / --frontal-only)"),
    ("skipped_rows", "unusable label rows"),
    ("patient_overlap", "patient also in the official test set"),
)


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--chunk-size", type=int, metavar="N",
                        help=f"images per resumable chunk of a new cache (default: automatic, at most 256; "
                             f"1 to {MAX_CHUNK})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn when not on a terminal)")


def _n(k: int, what: str = "image") -> str:
    return f"{k:,} {what}{'' if k == 1 else 's'}"


def summary_lines(counts: dict, bad_reasons: dict, report: Path) -> list[str]:
    """The end-of-run summary: what was decoded, what was left out and why, where the list is."""
    cached = int(counts.get("cached", 0))
    listed, missing = counts.get("listed"), int(counts.get("missing", 0))
    lines = ["summary:"]
    lines.append(f"  decoded and cached       {cached:>10,}")
    if listed is not None:
        lines.append(f"  listed in the labels     {int(listed):>10,}")
    lines.append(f"  listed but missing       {missing:>10,}")
    bad = int(counts.get("bad", 0))
    detail = ", ".join(f"{n:,} {k}" for k, n in bad_reasons.items()) if bad_reasons else ""
    lines.append(f"  skipped, unreadable      {bad:>10,}" + (f"  ({detail})" if detail else ""))
    lines.append(f"  skipped, outside --data-dir {int(counts.get('outside', 0)):>7,}")
    for key, name in _RULES:
        if counts.get(key):
            lines.append(f"  skipped, {name}: {int(counts[key]):,}")
    if "unlisted" in counts:
        lines.append(f"  on disk but unlisted     {int(counts['unlisted']):>10,}")
    lines.append(f"  every left-out file and its reason: {report}")
    if listed and missing and missing >= cached:
        lines.append(f"warning: only {_n(cached)} of the {int(listed):,} listed in the label file "
                     f"{'was' if cached == 1 else 'were'} cached: {missing:,} listed images are not under --data-dir "
                     "(is it the whole dataset, with every images_*/ folder?)")
    return lines


def run(args) -> int:
    from ..errors import UserError

    if args.chunk_size is not None and not 1 <= args.chunk_size <= MAX_CHUNK:
        raise UserError(f"--chunk-size must be from 1 to {MAX_CHUNK}, got {args.chunk_size}")
    cfg = data_config(args)  # every data option is checked here, before anything is listed or decoded
    if cfg["dataset"] == "synthetic":
        print("synthetic data are generated in memory when needed; nothing to preprocess "
              "(pick --dataset nih, chexpert, rsna or folder)")
        return 0
    ds = open_dataset(cfg, progress=not args.quiet, chunk_size=args.chunk_size, check_splits=False)
    print(ds.describe())
    manifest = read_manifest(ds.cache_dir) or {}
    print(f"cache: {ds.cache_dir}")
    for line in summary_lines(ds.counts, manifest.get("bad_reasons", {}), ds.cache_dir / REPORT):
        print(line)
    try:
        ds.check_splits()
    except UserError as e:  # the cache is complete; only training on it would fail
        print(f"warning: {e}")
    return 0
