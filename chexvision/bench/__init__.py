"""``python -m chexvision bench``: time the NumPy and torch tracks side by side, in one run.

Each section is a module of this package exposing ``TITLE`` and
``run(quick: bool) -> list[dict]`` (one dict per table row: plain names to numbers or strings).
Sections print as aligned tables; ``--json PATH`` writes every row. Benchmarks are never part of
the test suite's timing; the tests only check that the command runs and prints its tables.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import sys
import time

import numpy as np

HELP = "time the NumPy and torch tracks side by side and print throughput ratios"

# measured wall time of `python -m chexvision bench --quick`, all sections
QUICK_DURATION = ("measured: 1.5 min of CPU time, 12.6 min wall on a 2-core machine at load average 20, about "
                  "45 s when idle")
FULL_DURATION = "more repeats and sizes: several times --quick"

WHAT = ("bench: times, in this one run, with the two tracks interleaved: {sections}. Rows with a target say "
        "whether this run met it. {mode}")

# section name -> module
SECTIONS = {
    "mlp": "chexvision.bench.mlp",
    "preprocess": "chexvision.bench.preprocess",
    "conv": "chexvision.bench.conv",
    "densenet": "chexvision.bench.densenet",
}


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"fewer repeats and smaller sizes, noisier figures ({QUICK_DURATION})")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    p.add_argument(
        "--only", metavar="NAMES", default=None,
        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})",
    )


def format_table(rows: list[dict]) -> str:
    """Rows of dicts -> an aligned text table (floats with 4 significant digits)."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def run(args) -> int:
    from ..errors import UserError

    names = list(SECTIONS) if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise UserError(f"unknown bench section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__},
        "quick": bool(args.quick),
        "sections": {},
    }
    names = [n for n in names if importlib.util.find_spec(SECTIONS[n]) is not None]
    mods = {n: importlib.import_module(SECTIONS[n]) for n in names}
    mode = (f"--quick: fewer repeats and sizes ({QUICK_DURATION})" if args.quick
            else f"full run ({FULL_DURATION}; --quick for a shorter, noisier one)")
    print(WHAT.format(sections="; ".join(f"{n} = {m.TITLE}" for n, m in mods.items()), mode=mode), flush=True)
    start = time.perf_counter()
    from .timing import start_clock

    start_clock()
    for i, name in enumerate(names):
        mod = mods[name]
        print(f"bench: section {i + 1}/{len(names)} ({name}) running, {time.perf_counter() - start:.0f} s elapsed",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows = mod.run(quick=args.quick)
        print(f"\n== {mod.TITLE} ({time.perf_counter() - t0:.1f} s) ==")
        print(format_table(rows))
        result["sections"][name] = rows
    print(f"\nbench: done in {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        from numpy_nn.serialization import atomic_write

        atomic_write(args.json, lambda f: f.write(json.dumps(result, indent=2).encode()))
    return 0
