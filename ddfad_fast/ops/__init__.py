"""The DSP operations and their backends.

Public functions (one per operation; each validates its input once and dispatches by device and dtype):
:mod:`~ddfad_fast.ops.features` (fd_mfcc, mfcc, deltas, mel_filterbank) and :mod:`~ddfad_fast.ops.reconstruct`
(mfcc_to_mel, mel_to_magnitude, griffin_lim, fd_mfcc_to_audio). Behind them: :mod:`~ddfad_fast.ops.tables`
(every constant: windows, mel and DCT matrices, delta filters, frame counts), :mod:`~ddfad_fast.ops.dispatch`
(the registry that picks a backend), :mod:`~ddfad_fast.ops.reference` (plain torch, the oracle),
:mod:`~ddfad_fast.ops.cpu` (C++ and numba), :mod:`~ddfad_fast.ops.gpu` (Triton and CUDA) and
:mod:`~ddfad_fast.ops._ext` (the one loader of the compiled extension).
"""
from __future__ import annotations

from .features import deltas, fd_mfcc, mel_filterbank, mfcc
from .reconstruct import fd_mfcc_to_audio, griffin_lim, mel_to_magnitude, mfcc_to_mel

__all__ = ["deltas", "fd_mfcc", "fd_mfcc_to_audio", "griffin_lim", "mel_filterbank", "mel_to_magnitude", "mfcc",
           "mfcc_to_mel"]
