"""Audio in and out: files (:mod:`~ddfad_fast.audio.files`: load, save, resample), quality metrics of a
reconstruction (:mod:`~ddfad_fast.audio.metrics`) and torchaudio-style modules (:mod:`~ddfad_fast.audio.transforms`)."""
from __future__ import annotations

from .files import load_audio, resample, resample_array, resample_sinc, resampled_length, save_audio, wav_truncation
from .metrics import log_spectral_distance, spectral_convergence

__all__ = ["load_audio", "log_spectral_distance", "resample", "resample_array", "resample_sinc", "resampled_length",
           "save_audio", "spectral_convergence", "wav_truncation"]
