"""The CPU thread count of a training checkpoint, recorded when it is written and checked when it is resumed.

PyTorch's CPU kernels split their sums over ``torch.get_num_threads()`` threads, so the thread count
decides the order of floating-point additions. Expert training, distillation and evaluation
checkpoints store it (field ``num_threads``); resuming one with another count is allowed (the result
stays valid) but no longer bit-identical to an uninterrupted run with the original count, and that is
said once per resume with a :class:`ThreadCountWarning`.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Mapping, Optional

import torch

from ..errors import ThreadCountWarning

THREADS_FIELD = "num_threads"


def thread_record() -> dict:
    """The payload entry every training checkpoint carries: ``{"num_threads": torch.get_num_threads()}``."""
    return {THREADS_FIELD: torch.get_num_threads()}


def saved_threads(obj: Mapping) -> Optional[int]:
    """The thread count a loaded checkpoint was written with, or None (a file of an earlier release)."""
    value = obj.get(THREADS_FIELD)
    return None if value is None else int(value)


def check_resume_threads(saved: Iterable[Optional[int]], where: str) -> Optional[str]:
    """Warn once when any of the ``saved`` thread counts (None: unknown) differs from this process's.

    Parameters
    ----------
    saved : the counts read with :func:`saved_threads` from the checkpoints being resumed.
    where : what is resumed (a file or folder), named in the message.

    Returns
    -------
    The message warned (a :class:`ThreadCountWarning`), or None when every known count matches.
    """
    now = torch.get_num_threads()
    other = sorted({n for n in saved if n is not None and n != now})
    if not other:
        return None
    was = " / ".join(str(n) for n in other)
    message = (f"{where}: resumed with {now} CPU thread(s), written with {was}: the result stays valid but is no "
               f"longer bit-identical to an uninterrupted run with {was} thread(s) (sums are split differently); "
               f"pass --threads {other[0]} to keep bit-identity")
    warnings.warn(message, ThreadCountWarning, stacklevel=3)
    return message
