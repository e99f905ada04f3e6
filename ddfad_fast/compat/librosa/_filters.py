"""librosa's mel filterbank (``filters.mel``): Slaney or HTK mels, Slaney area, p-norm or no normalisation.

The same float64 arithmetic as librosa 0.11, so the bank equals librosa's to the last bit; the Slaney /
Slaney-norm bank is also the one :mod:`ddfad_fast.ops.tables` gives the fast kernels.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Union

import numpy as np

from ._errors import ParameterError, librosa_errors

_LOG_STEP = np.log(6.4) / 27.0        # Slaney: mels per log step above 1 kHz
_F_SP = 200.0 / 3                     # Slaney: Hz per mel below 1 kHz
_MIN_LOG_MEL = 1000.0 / _F_SP


def hz_to_mel(frequencies: Any, *, htk: bool = False) -> Any:
    """Hz -> mels (librosa.hz_to_mel): HTK ``2595 log10(1 + f / 700)`` or Slaney (linear below 1 kHz)."""
    frequencies = np.asanyarray(frequencies)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    mels = frequencies / _F_SP
    if frequencies.ndim:
        log_t = frequencies >= 1000.0
        mels[log_t] = _MIN_LOG_MEL + np.log(frequencies[log_t] / 1000.0) / _LOG_STEP
    elif frequencies >= 1000.0:
        mels = _MIN_LOG_MEL + np.log(frequencies / 1000.0) / _LOG_STEP
    return mels


def mel_to_hz(mels: Any, *, htk: bool = False) -> Any:
    """mels -> Hz (librosa.mel_to_hz), the inverse of :func:`hz_to_mel`."""
    mels = np.asanyarray(mels)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = _F_SP * mels
    if mels.ndim:
        log_t = mels >= _MIN_LOG_MEL
        freqs[log_t] = 1000.0 * np.exp(_LOG_STEP * (mels[log_t] - _MIN_LOG_MEL))
    elif mels >= _MIN_LOG_MEL:
        freqs = 1000.0 * np.exp(_LOG_STEP * (mels - _MIN_LOG_MEL))
    return freqs


def normalize_rows(weights: np.ndarray, norm: Any) -> np.ndarray:
    """librosa.util.normalize(weights, norm=norm, axis=-1): rows scaled to unit ``norm`` (inf, -inf, 0: the count
    of non-zeros, p > 0, None: unchanged); rows of length below the smallest normal number are left as they are."""
    if not np.all(np.isfinite(weights)):
        raise ParameterError("Input must be finite")
    if norm is None:
        return weights
    mag = np.abs(weights).astype(float)
    if norm == np.inf:
        length = np.max(mag, axis=-1, keepdims=True)
    elif norm == -np.inf:
        length = np.min(mag, axis=-1, keepdims=True)
    elif norm == 0:
        length = np.sum(mag > 0, axis=-1, keepdims=True, dtype=mag.dtype)
    elif np.issubdtype(type(norm), np.number) and norm > 0:
        length = np.sum(mag ** norm, axis=-1, keepdims=True) ** (1.0 / norm)
    else:
        raise ParameterError(f"Unsupported norm: {repr(norm)}")
    length[length < np.finfo(weights.dtype).tiny] = 1.0
    out = np.empty_like(weights)
    out[:] = weights / length
    return out


@librosa_errors
def mel(*, sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: Optional[float] = None,
        htk: bool = False, norm: Union[str, float, None] = "slaney", dtype: Any = np.float32) -> np.ndarray:
    """librosa.filters.mel: the (n_mels, 1 + n_fft // 2) triangular mel filterbank.

    Parameters
    ----------
    sr, n_fft : sample rate (Hz) and FFT size.
    n_mels, fmin, fmax : bands and their range in Hz (fmax None: sr / 2).
    htk : HTK mel scale instead of Slaney's.
    norm : "slaney" (unit area per band), a number (unit p-norm rows, as librosa.util.normalize), or None.
    dtype : output dtype.

    Raises
    ------
    ParameterError
        An unknown ``norm``. Empty bands warn (UserWarning) as librosa does.
    """
    fmax = float(sr) / 2 if fmax is None else fmax
    n_mels = int(n_mels)
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=dtype)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if isinstance(norm, str):
        if norm != "slaney":
            raise ParameterError(f"Unsupported norm={norm}")
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    else:
        weights = normalize_rows(weights, norm)
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn("Empty filters detected in mel frequency basis. Some channels will produce empty responses. "
                      "Try increasing your sampling rate (and fmax) or reducing n_mels.", stacklevel=3)
    return weights
