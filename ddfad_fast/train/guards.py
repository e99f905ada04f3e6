"""Non-finite guards of training: a loss or a state that becomes NaN or infinite stops the stage with a
:class:`~ddfad_fast.errors.NonFiniteError` naming what to blame, before anything non-finite is saved (the
last checkpoint on disk is the last finite state)."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple

import torch
from torch import Tensor

from ..errors import NonFiniteError, ParameterError


def finite_settings(settings: Iterable[Tuple[str, float]]) -> None:
    """ParameterError naming the first setting that is NaN or infinite (e.g. ``--lr-data inf``)."""
    for name, value in settings:
        if value is not None and not math.isfinite(float(value)):
            raise ParameterError(f"{name} must be a finite number, got {value}")


def is_finite(*values) -> bool:
    """Whether every tensor or number of ``values`` (None ignored) is finite."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, Tensor):
            if value.numel() and not bool(torch.isfinite(value).all()):
                return False
        elif not math.isfinite(float(value)):
            return False
    return True


def require_finite(what: str, *values, blame: str = "", kept: Optional[str] = None) -> None:
    """NonFiniteError ``"{what} became NaN or infinite; {blame}"`` (and where the last finite state is) when
    any of ``values`` is not finite."""
    if is_finite(*values):
        return
    message = f"{what} became NaN or infinite"
    if blame:
        message += f"; {blame}"
    if kept:
        message += f"; the last finite state is kept in {kept}"
    raise NonFiniteError(message)
