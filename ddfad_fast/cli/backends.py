"""``ddfad backends``: which backend runs each op here, and why each other backend does not."""
from __future__ import annotations

import argparse
import os
from typing import List

import torch

HELP = "show which backend runs each op on this machine, and why the others do not"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=sorted(DTYPES), action="append",
                        help="input dtype to explain (repeatable; default: float32 and float64)")
    parser.add_argument("--op", action="append", help="op to explain (repeatable; default: every registered op)")


def report(ops: List[str], dtypes: List[torch.dtype]) -> List[str]:
    """The lines ``ddfad backends`` prints."""
    from ..ops import dispatch, cpu
    from ..errors import ParameterError

    unknown = sorted(set(ops) - set(dispatch.ops()))
    if unknown:
        raise ParameterError(f"unknown op {unknown[0]!r}; registered: {', '.join(dispatch.ops())}")
    error = cpu.extension_error()
    lines = [f"C++ extension ddfad_fast._C: {'loaded' if error is None else 'not loaded: ' + error}",
             f"DDFAD_BACKEND: {dispatch.forced_backend() or 'not set (automatic order)'}; "
             f"DDFAD_REQUIRE_EXT: {'1' if dispatch.extension_required() else 'not set'}; "
             f"TRITON_INTERPRET: {os.environ.get('TRITON_INTERPRET', 'not set')}"]
    for module, message in sorted(dispatch.provider_errors().items()):
        lines.append(f"provider {module} failed to import: {message}")
    for op in ops:
        for device in dispatch.devices():
            for dtype in dtypes:
                chosen, why = dispatch.explain(op, device, dtype)
                lines.append(f"{op} on {device}, {str(dtype).replace('torch.', '')}: "
                             f"{chosen if chosen is not None else 'nothing can run it'}")
                width = max(len(b) for b, _ in why)
                lines.extend(f"  {b.ljust(width)}  {reason}" for b, reason in why)
    return lines


def main(args: argparse.Namespace) -> int:
    from ..ops import dispatch

    dtypes = [DTYPES[d] for d in (args.dtype or ["float32", "float64"])]
    print("\n".join(report(args.op or dispatch.ops(), dtypes)))
    return 0
