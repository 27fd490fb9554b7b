"""``python -m chexvision docs``: generate ``docs/side_by_side.md``, the side-by-side reading guide.

The guide is built from the source and never edited by hand. For each concept (Linear,
activations, losses, Dropout, BatchNorm, Conv2d, pooling, each optimizer, the schedulers, the
models, one training step) it puts the NumPy implementation next to its PyTorch counterpart: the
``torch_ref`` code where the reference has its own (``MLP``, ``train_step``, ...), otherwise the
``torch`` call it mirrors; it pulls each backward's derivation out of the code, and links the
parity test that proves the two equal (found by scanning ``parity/test_*.py`` for the class name).

The package: this module is the command (``HELP``, ``add_arguments``, ``run``); ``concepts`` holds
the table of contents (``PARTS``), ``discovery`` finds the code and the parity tests, ``guide``
renders the Markdown.

How the pieces are found:

* ``numpy_nn`` is imported and walked (``pkgutil``); a public object is one whose name has no
  leading underscore and whose ``__module__`` is the module walked. Its code comes from
  ``inspect.getsource``. Every public class lands in the guide: the ``PARTS`` table in
  ``concepts`` places the ones it names (or the modules it claims), the rest go to a final section.
* ``torch_ref`` and ``parity`` are read with ``ast``, never imported, so the guide does not
  depend on the installed torch and generating it never imports torch.
* Output depends only on the source files: no timestamps, no dict-order or filesystem-order
  accidents. ``--check`` regenerates in memory and exits 1 when the file on disk differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .guide import NO_PARITY, NOT_WRITTEN, generate, source_root

HELP = "generate docs/side_by_side.md, the NumPy-next-to-PyTorch reading guide (--check: exit 1 if stale)"

GUIDE = Path("docs") / "side_by_side.md"


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the file on disk differs from what the source generates")
    p.add_argument("--out", metavar="PATH", default=None, help=f"where to write (default: {GUIDE} in the checkout)")


def run(args) -> int:
    root = source_root()
    out = Path(args.out) if args.out else root / GUIDE
    text, guide = generate(root)
    gaps = guide.found.problems + [f"{NO_PARITY}: {q}" for q in guide.missing_parity]
    gaps += [f"{NOT_WRITTEN}: {n}" for n in guide.not_written]
    for g in gaps:
        print(f"chexvision docs: warning: {g}", file=sys.stderr)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != text:
            why = "missing" if current is None else "stale"
            print(f"chexvision docs: {out} is {why}; regenerate it with `python -m chexvision docs`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    from numpy_nn.serialization import atomic_write

    atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    print(f"wrote {out} ({len(guide.placed)} objects, {len(gaps)} gap(s))")
    return 0
