"""librosa's calls on ddfad_fast's kernels: ``import ddfad_fast.compat.librosa as librosa``.

Same names, keyword arguments, defaults, numpy in / numpy out, shapes, warnings and exceptions as librosa 0.11:
``feature.mfcc``, ``feature.melspectrogram``, ``feature.delta``, ``power_to_db``, ``db_to_power``,
``amplitude_to_db``, ``db_to_amplitude``, ``stft``, ``griffinlim``, ``filters.mel``,
``feature.inverse.mfcc_to_mel``, ``feature.inverse.mel_to_stft``, ``feature.inverse.mel_to_audio``,
``feature.inverse.mfcc_to_audio``. Every parameter librosa supports is supported: the defaults (and the
variants the kernels have) run on the fast kernels; the rest (``center=False``, other padding modes, any
``scipy.signal.get_window`` window, DCT types 1 and 3, HTK or unnormalised mels, other delta modes and orders)
is computed in plain torch as librosa computes it and announced once with a
:class:`~ddfad_fast.errors.BackendFallbackWarning`. librosa's semantics are kept where they are easy to miss:
``power_to_db`` (and ``mfcc`` from audio) floor at ``top_db`` below the maximum of the *whole* array, not per
clip; ``griffinlim`` draws its initial phases from ``random_state`` exactly as librosa does;
``feature.inverse.mel_to_stft`` returns librosa's non-negative least-squares solution.

:class:`ParameterError` (raised by every call here) is a subclass of both :class:`ddfad_fast.errors.ParameterError`
and, where librosa is installed, ``librosa.ParameterError``. Every other attribute is librosa's own when librosa
is installed (``librosa.load``, ``librosa.resample``, ... keep working).
"""
from __future__ import annotations

import importlib
from typing import Any

from ._errors import ParameterError
from ._feature import delta, melspectrogram, mfcc
from ._filters import mel
from ._inverse import mel_to_audio, mel_to_stft, mfcc_to_audio, mfcc_to_mel
from ._spectrum import amplitude_to_db, db_to_amplitude, db_to_power, griffinlim, power_to_db, stft

__all__ = ["mfcc", "melspectrogram", "delta", "power_to_db", "db_to_power", "amplitude_to_db", "db_to_amplitude",
           "stft", "griffinlim", "mfcc_to_mel", "mel_to_stft", "mel_to_audio", "mfcc_to_audio", "feature", "filters",
           "ParameterError"]


def _librosa_attribute(path: str, name: str) -> Any:
    """librosa's own ``path.name``, for everything this module does not provide."""
    try:
        module = importlib.import_module(path)
    except ImportError:
        raise AttributeError(f"ddfad_fast.compat.librosa provides no {name!r}, and librosa (which would) is not "
                             "installed") from None
    return getattr(module, name)


class _Namespace:
    """``feature`` / ``feature.inverse`` / ``filters``: our functions first, then librosa's own."""

    def __init__(self, path: str, **functions: Any) -> None:
        self._path = path
        self.__dict__.update(functions)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _librosa_attribute(self._path, name)


feature = _Namespace("librosa.feature", mfcc=mfcc, melspectrogram=melspectrogram, delta=delta,
                     inverse=_Namespace("librosa.feature.inverse", mfcc_to_mel=mfcc_to_mel, mel_to_stft=mel_to_stft,
                                        mel_to_audio=mel_to_audio, mfcc_to_audio=mfcc_to_audio))
filters = _Namespace("librosa.filters", mel=mel)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return _librosa_attribute("librosa", name)
