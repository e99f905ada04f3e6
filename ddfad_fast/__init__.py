"""ddfad_fast: fast dataset distillation for audio (DDFAD).

Stages: FD-MFCC features (:func:`fd_mfcc`), MTT distillation (:mod:`ddfad_fast.distill`),
reconstruction to audio (:func:`fd_mfcc_to_audio`). Every op dispatches to the fastest available
backend (see :mod:`ddfad_fast.backends`); the plain-torch reference is always there.

Public names are imported lazily so that ``import ddfad_fast`` is cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig, ReconstructConfig
from .errors import (AudioFileError, BackendFallbackWarning, BackendUnavailableError, DDFADError, FileFormatError,
                     ParameterError, ResourceError)

__version__ = "0.1.0"

_LAZY = {
    # audio I/O
    "load_audio": "audio", "save_audio": "audio",
    # features
    "fd_mfcc": "features", "mfcc": "features", "deltas": "features", "mel_filterbank": "features",
    # reconstruction
    "mfcc_to_mel": "reconstruct", "mel_to_magnitude": "reconstruct", "griffin_lim": "reconstruct",
    "fd_mfcc_to_audio": "reconstruct", "spectral_convergence": "reconstruct",
    "log_spectral_distance": "reconstruct",
}

__all__ = sorted(list(_LAZY) + [
    "FeatureConfig", "ReconstructConfig", "ModelConfig", "ExpertConfig", "DistillConfig", "EvalConfig",
    "DDFADError", "ParameterError", "AudioFileError", "BackendUnavailableError", "FileFormatError", "ResourceError",
    "BackendFallbackWarning",
])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ddfad_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
