"""The output folders a command writes into, locked for the command's lifetime (one writer per folder)."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Iterator, List, Optional


def output_folders(args: argparse.Namespace) -> List[Path]:
    """The folders ``args``' command writes into (a feature store under --cache is locked by the store itself)."""
    command = getattr(args, "command", None)
    if command == "features":
        if getattr(args, "store", None) is not None:
            return [args.store]
        if getattr(args, "out", None) is not None:
            from .features import parts_dir
            return [parts_dir(args.out)]
        return []
    if command in ("reconstruct", "experts", "distill", "run", "evaluate"):
        return [args.out] if getattr(args, "out", None) is not None else []
    if command in ("continual", "nas"):
        return [args.out if args.out is not None else args.run / command]
    if command == "data" and getattr(args, "action", None) == "fetch" and getattr(args, "to", None) is not None:
        return [args.to]
    return []


@contextlib.contextmanager
def holding_outputs(args: argparse.Namespace) -> Iterator[None]:
    """Hold the lock of every output folder of ``args``' command (rank 0 alone under torchrun: the other ranks
    write into rank 0's folders)."""
    from .. import distributed
    from ..outputs import hold
    with contextlib.ExitStack() as stack:
        def take() -> None:
            for folder in output_folders(args):
                stack.enter_context(hold(folder))
        distributed.together(take, run=distributed.is_main())   # a refusal on rank 0 stops every rank at once
        yield


def out_of_memory(exc: BaseException) -> Optional[str]:
    """One line for an allocation that failed (MemoryError, torch's OutOfMemoryError, the CPU allocator's
    RuntimeError), None for any other exception."""
    import re

    import torch
    if not (isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or
            (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))):
        return None
    size = re.search(r"allocate (\d+) bytes", str(exc))
    what = f"an allocation of {int(size.group(1)) / 2 ** 30:,.1f} GiB failed" if size else "an allocation failed"
    return (f"not enough memory: {what}; lower the width, the batch sizes or --syn-steps, or set --max-memory "
            "where the command has it (finished work is kept)")
