"""``python -m chexvision <command>``: one argparse parser, one subcommand per module.

Each command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. ``main(argv)`` is what tests call. Nothing a user can cause ends in a
traceback: a bad input (``UserError``, a missing file) prints one line on stderr and returns 2; a
failure of the environment (disk full, no permission, read-only file system, out of memory)
prints one line and returns 1. Every file is written atomically, so files already there are intact.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import os
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
    except UserError as e:  # exit_code: 2 for bad input, 1 for an environment failure (a subclass)
        print(f"chexvision {args.command}: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        print(f"chexvision {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions, read-only file system, I/O error: the environment's
        print(f"chexvision {args.command}: error: {_environment(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"chexvision {args.command}: error: out of memory; use smaller settings (see --help for the limits)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"chexvision {args.command}: interrupted", file=sys.stderr)
        return 130


ENVIRONMENT = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted"}


def _environment(e: OSError) -> str:
    what = ENVIRONMENT.get(e.errno) or e.strerror or type(e).__name__
    where = " ".join(os.fspath(f) for f in (e.filename, e.filename2) if f is not None)
    return (f"{what}" + (f" ({where})" if where else "") +
            "; every file is written atomically, so those already there (e.g. the previous checkpoint) are intact")


if __name__ == "__main__":
    sys.exit(main())
