"""ddfad_fast: fast dataset distillation for audio (DDFAD).

Stages: FD-MFCC features (:func:`fd_mfcc`), MTT distillation (:mod:`ddfad_fast.train.distill`),
reconstruction to audio (:func:`fd_mfcc_to_audio`). Every op dispatches to the fastest available
backend (see :mod:`ddfad_fast.ops.dispatch`); the plain-torch reference is always there.

Sub-packages, each importing only the ones listed before it: the core modules (errors, config, io,
distributed, presets, resources), ``ops`` (DSP operations and backends), ``audio`` (files, metrics,
transforms), ``data`` (sources, feature store, splits), ``train`` (models, unroll, experts, distillation,
evaluation), ``apps`` (the pipeline, reports, continual learning, NAS) and ``cli``; ``compat`` holds
drop-in replacements of other libraries' APIs.

Public names are imported lazily so that ``import ddfad_fast`` is cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import _moved
from .config import DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig, ReconstructConfig
from .errors import AudioFileError, BackendFallbackWarning, BackendUnavailableError, DDFADError, FileFormatError, ParameterError, ResourceError

__version__ = "0.1.0"

_moved.install()

_LAZY = {
    # audio I/O
    "load_audio": "audio.files", "save_audio": "audio.files",
    # features
    "fd_mfcc": "ops.features", "mfcc": "ops.features", "deltas": "ops.features", "mel_filterbank": "ops.features",
    # reconstruction
    "mfcc_to_mel": "ops.reconstruct", "mel_to_magnitude": "ops.reconstruct", "griffin_lim": "ops.reconstruct",
    "fd_mfcc_to_audio": "ops.reconstruct", "spectral_convergence": "audio.metrics",
    "log_spectral_distance": "audio.metrics",
    # the whole job
    "distill_dataset": "apps.api", "DistillRun": "apps.result",
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
