"""The ``ddfad`` command line: one sub-command per stage.

Each sub-command lives in ``ddfad_fast/commands/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``. Exit codes: 0 success, 1 failure, 2 usage or
configuration error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from .errors import DDFADError, ParameterError, FileFormatError, ResourceError

COMMANDS = ("features", "reconstruct", "data", "experts", "distill", "evaluate", "run", "bench", "backends")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CommandImportError(DDFADError, ImportError):
    """A sub-command module that cannot be imported: a broken install, never a command to drop in silence."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddfad", description="Dataset distillation for audio (DDFAD).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ddfad_fast.commands.{name}")
        except ImportError as exc:
            raise CommandImportError(f"sub-command {name!r} cannot be loaded: ddfad_fast.commands.{name} failed to "
                                     f"import ({type(exc).__name__}: {exc})") from exc
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        parser = _build_parser()
    except CommandImportError as exc:
        print(f"ddfad: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        print(f"ddfad {args.command}: interrupted; finished work is saved, run the same command with --resume "
              "to continue", file=sys.stderr)
        return 130
    except (ParameterError, FileFormatError, ResourceError) as exc:
        print(f"ddfad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DDFADError as exc:
        print(f"ddfad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
