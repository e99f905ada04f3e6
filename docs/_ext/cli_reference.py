"""Writes the command-line reference (``cli.md``) from the ``ddfad`` argument parser at every build, so the
page cannot drift from the parser."""
from __future__ import annotations

import argparse
from pathlib import Path


def _write(app) -> None:
    from ddfad_fast.cli.entry import build_parser

    parser = build_parser()
    lines = ["# Command-line reference", "",
             "Generated from the `ddfad` argument parser at every build of this site. Exit codes: 0 success, "
             "1 failure, 2 usage or configuration error, 130 interrupted (the work done is kept: run the same "
             "command with `--resume`).", "", "```text", parser.format_help().rstrip(), "```", ""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        lines += [f"## `ddfad {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    out = Path(app.srcdir) / "cli.md"
    text = "\n".join(lines)
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)


def setup(app):
    app.connect("builder-inited", _write)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
