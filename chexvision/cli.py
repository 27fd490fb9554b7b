"""``python -m chexvision <command>``: one argparse parser, one subcommand per module.

Each command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. ``main(argv)`` is what tests call. A ``UserError`` (or a missing file) prints
one line on stderr and returns 2; nothing a user can cause ends in a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from .errors import UserError

# command -> module implementing it
COMMANDS = {
    "train": "chexvision.train",
    "evaluate": "chexvision.evaluate",
    "predict": "chexvision.predict",
    "preprocess": "chexvision.data.preprocess",
    "bench": "chexvision.bench",
    "compare": "chexvision.compare",
    "docs": "chexvision.docs",
    "convert": "chexvision.convert",
}


def _available() -> dict[str, object]:
    mods = {}
    for name, modname in COMMANDS.items():
        try:
            found = importlib.util.find_spec(modname) is not None
        except ModuleNotFoundError:  # parent package not there
            found = False
        if found:
            mods[name] = importlib.import_module(modname)
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chexvision",
        description="Chest X-ray screening (normal vs abnormal) with a hand-written NumPy track or a PyTorch track.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in _available().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"chexvision {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"chexvision {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"chexvision {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
