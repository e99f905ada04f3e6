"""The exception class of ``ddfad_fast.compat.librosa`` and the notice of a variant computed in plain torch."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from ... import errors
from ...ops import dispatch

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


def torch_variant(function: str, reason: str) -> None:
    """Warn once (BackendFallbackWarning) that ``function`` runs in plain torch: the fast kernels lack ``reason``."""
    dispatch.warn_fallback(f"compat.librosa.{function}", "fast kernels", reason, "plain torch")
