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
import time

import numpy as np

HELP = "time the NumPy and torch tracks side by side and print throughput ratios"

# section name -> module
SECTIONS = {
    "mlp": "chexvision.bench.mlp",
    "preprocess": "chexvision.bench.preprocess",
    "conv": "chexvision.bench.conv",
    "densenet": "chexvision.bench.densenet",
}


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="fewer repeats and sizes (seconds, not minutes)")
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
    for name in names:
        if importlib.util.find_spec(SECTIONS[name]) is None:
            continue
        mod = importlib.import_module(SECTIONS[name])
        t0 = time.perf_counter()
        rows = mod.run(quick=args.quick)
        print(f"\n== {mod.TITLE} ({time.perf_counter() - t0:.1f} s) ==")
        print(format_table(rows))
        result["sections"][name] = rows
    if args.json:
        from numpy_nn.serialization import atomic_write

        atomic_write(args.json, lambda f: f.write(json.dumps(result, indent=2).encode()))
    return 0
