"""``python -m chexvision preprocess``: decode a dataset once into the memory-mapped cache.

Parallel over processes with a progress bar, resumable after a kill (run the same command
again), a no-op when the cache is complete. Prints the split table and where the report of
left-out files is. ``train`` and ``evaluate`` build the cache themselves when it is missing;
this command does it up front (e.g. once on Kaggle before trying many models).
"""

from __future__ import annotations

from .cache import REPORT
from .dataset import add_data_arguments, data_config, open_dataset

HELP = "decode a dataset once into the memory-mapped uint8 cache that train/evaluate read (resumable)"


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--chunk-size", type=int, metavar="N",
                        help="images per resumable chunk of a new cache (default: automatic, at most 256)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..errors import UserError

    if args.chunk_size is not None and args.chunk_size < 1:
        raise UserError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    cfg = data_config(args)
    if cfg["dataset"] == "synthetic":
        print("synthetic data are generated in memory when needed; nothing to preprocess "
              "(pick --dataset nih, chexpert or folder)")
        return 0
    ds = open_dataset(cfg, progress=not args.quiet, chunk_size=args.chunk_size)
    print(ds.describe())
    c = ds.counts
    print(f"cache: {ds.cache_dir} ({c.get('cached', len(ds)):,} images, {c.get('bad', 0):,} bad files, "
          f"{c.get('missing', 0):,} listed but missing, {c.get('unlisted', 0):,} unlisted; "
          f"report: {ds.cache_dir / REPORT})")
    return 0
