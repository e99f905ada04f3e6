"""``ddfad bench NAME``: run one of the benchmark scripts of the source tree (bench/NAME.py)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..errors import OutputError, ParameterError

HELP = "run a benchmark script from bench/ (prints a table, writes JSON to bench/results/)"
BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _scripts() -> list:
    if not BENCH_DIR.is_dir():
        return []
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark to run (omit to list them)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to the script (e.g. --quick)")


def main(args: argparse.Namespace) -> int:
    names = _scripts()
    if not names:
        raise ParameterError(f"no benchmark scripts found in {BENCH_DIR} (benchmarks need the source tree)")
    if not args.name:
        print("benchmarks:", ", ".join(names))
        return 0
    if args.name not in names:
        raise ParameterError(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    results = BENCH_DIR / "results"
    if not os.access(results if results.is_dir() else BENCH_DIR, os.W_OK):
        raise OutputError(f"{results}: permission denied: benchmarks write their JSON there; make it writable")
    return subprocess.call([sys.executable, str(BENCH_DIR / f"{args.name}.py"), *args.extra])
