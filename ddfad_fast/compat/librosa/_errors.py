"""The exception class of ``ddfad_fast.compat.librosa`` and the notice of a variant computed in plain torch."""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Set, Tuple, TypeVar

from ... import errors

try:                                     # librosa's own class, so that ``except librosa.ParameterError`` catches ours
    from librosa.util.exceptions import ParameterError as _LibrosaParameterError
    _BASES: tuple = (errors.ParameterError, _LibrosaParameterError)
except ImportError:                      # no librosa: ours alone
    _BASES = (errors.ParameterError,)

F = TypeVar("F", bound=Callable[..., Any])


class ParameterError(*_BASES):  # type: ignore[misc]
    """A bad argument of a ``ddfad_fast.compat.librosa`` call: both ddfad_fast's ParameterError and, where librosa
    is installed, ``librosa.ParameterError``."""


def librosa_errors(fn: F) -> F:
    """Decorator: a ddfad_fast ParameterError raised inside ``fn`` leaves it as :class:`ParameterError` (same
    message), so that callers catching librosa's class catch it."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.ParameterError as error:
            if isinstance(error, ParameterError):
                raise
            raise ParameterError(str(error)) from error
    return wrapper  # type: ignore[return-value]


_WARNED: Set[Tuple[str, str]] = set()


def torch_variant(function: str, reason: str) -> None:
    """Warn once per (function, reason) with a BackendFallbackWarning that ``function`` runs in plain torch /
    numpy, because the fast kernels lack ``reason``; the warning points at the caller of ``function``."""
    if (function, reason) in _WARNED:
        return
    _WARNED.add((function, reason))
    warnings.warn(f"ddfad_fast.compat.librosa.{function}: the fast kernels lack {reason}; computing it in plain "
                  "torch as librosa does (slower, same result)", errors.BackendFallbackWarning, stacklevel=4)
