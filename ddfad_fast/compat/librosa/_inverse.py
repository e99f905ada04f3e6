"""librosa's ``feature.inverse`` on ddfad_fast: ``mfcc_to_mel``, ``mel_to_stft``, ``mel_to_audio``, ``mfcc_to_audio``.

``mel_to_stft`` gives librosa's answer: the same non-negative least squares (L-BFGS-B from the clipped
pseudo-inverse, scipy's solver, librosa's objective and block size), so its array is librosa's within the
solver's tolerance. ddfad_fast's own batched solver (:func:`ddfad_fast.mel_to_magnitude`, FISTA) stays the
package's default elsewhere; it fits the mel spectrogram as well but need not return librosa's array.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from ._errors import ParameterError, librosa_errors
from ._feature import dct_axis
from ._filters import mel as mel_filter
from ._spectrum import db_to_power, griffinlim

_MAX_MEM_BLOCK = 2 ** 8 * 2 ** 10          # librosa.util.MAX_MEM_BLOCK


def _tiny(x: np.ndarray) -> float:
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating) \
        else np.dtype(np.float32)
    return float(np.finfo(dtype).tiny)


@librosa_errors
def mfcc_to_mel(mfcc: np.ndarray, *, n_mels: int = 128, dct_type: int = 2, norm: Optional[str] = "ortho",
                ref: float = 1.0, lifter: float = 0) -> np.ndarray:
    """librosa.feature.inverse.mfcc_to_mel: undo the lifter, inverse DCT (zero-filled to ``n_mels``), dB to
    power: (..., n_mfcc, t) -> (..., n_mels, t)."""
    mfcc = np.asarray(mfcc)
    if lifter > 0:
        idx = np.arange(1, 1 + mfcc.shape[-2], dtype=mfcc.dtype)
        sine = (1 + lifter * 0.5 * np.sin(np.pi * idx / lifter))[:, None]
        if np.any(np.abs(sine) < np.finfo(sine.dtype).eps):
            warnings.warn("lifter array includes critical values that may invoke underflow.", UserWarning,
                          stacklevel=3)
        mfcc = mfcc / (sine + _tiny(mfcc))
    elif lifter != 0:
        raise ParameterError("MFCC to mel lifter must be a non-negative number.")
    return db_to_power(dct_axis(mfcc, dct_type, norm, n=n_mels, inverse=True), ref=ref)


def _nnls_objective(x: np.ndarray, shape: tuple, A: np.ndarray, B: np.ndarray) -> tuple:
    x = x.reshape(shape)
    diff = np.einsum("mf,...ft->...mt", A, x, optimize=True) - B
    value = (1 / B.size) * 0.5 * np.sum(diff ** 2)
    grad = (1 / B.size) * np.einsum("mf,...mt->...ft", A, diff, optimize=True)
    return value, grad.flatten()


def _nnls_block(A: np.ndarray, B: np.ndarray, x_init: Optional[np.ndarray] = None) -> np.ndarray:
    import scipy.optimize
    if x_init is None:
        x_init = np.einsum("fm,...mt->...ft", np.linalg.pinv(A), B, optimize=True)
        np.clip(x_init, 0, None, out=x_init)
    x, _, _ = scipy.optimize.fmin_l_bfgs_b(_nnls_objective, x_init, args=(x_init.shape, A, B),
                                           bounds=[(0, None)] * x_init.size, m=A.shape[1])
    return x.reshape(x_init.shape)


def nnls(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """librosa.util.nnls: argmin_{X >= 0} ||A X - B|| for (m, f) ``A`` and (..., m, t) ``B`` -> (..., f, t)."""
    import scipy.optimize
    if B.ndim == 1:
        return scipy.optimize.nnls(A, B)[0]
    n_columns = max(int(_MAX_MEM_BLOCK // (np.prod(B.shape[:-1]) * A.itemsize)), 1)
    if B.shape[-1] <= n_columns:
        return _nnls_block(A, B).astype(A.dtype)
    x = np.einsum("fm,...mt->...ft", np.linalg.pinv(A), B, optimize=True)
    np.clip(x, 0, None, out=x)
    for start in range(0, x.shape[-1], n_columns):
        stop = min(start + n_columns, B.shape[-1])
        x[..., start:stop] = _nnls_block(A, B[..., start:stop], x_init=x[..., start:stop])
    return x


@librosa_errors
def mel_to_stft(M: np.ndarray, *, sr: float = 22050, n_fft: int = 2048, power: float = 2.0,
                **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mel_to_stft: librosa's non-negative least squares (:func:`nnls`) of the mel bank
    (``filters.mel(sr, n_fft, n_mels=M.shape[-2], dtype=M.dtype, **kwargs)``), raised to 1 / ``power``:
    (..., n_mels, t) -> (..., 1 + n_fft // 2, t)."""
    M = np.asarray(M)
    bank = mel_filter(sr=sr, n_fft=n_fft, n_mels=M.shape[-2], dtype=M.dtype, **kwargs)
    inverse = nnls(bank, M)
    return np.power(inverse, 1.0 / power, out=inverse)


def mel_to_audio(M: np.ndarray, *, sr: float = 22050, n_fft: int = 2048, hop_length: Optional[int] = None,
                 win_length: Optional[int] = None, window: Any = "hann", center: bool = True,
                 pad_mode: Any = "constant", power: float = 2.0, n_iter: int = 32, length: Optional[int] = None,
                 dtype: Any = np.float32, **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mel_to_audio: :func:`mel_to_stft` then :func:`griffinlim` (random phases)."""
    stft = mel_to_stft(M, sr=sr, n_fft=n_fft, power=power, **kwargs)
    return griffinlim(stft, n_iter=n_iter, hop_length=hop_length, win_length=win_length, n_fft=n_fft,
                      window=window, center=center, dtype=dtype, length=length, pad_mode=pad_mode)


def mfcc_to_audio(mfcc: np.ndarray, *, n_mels: int = 128, dct_type: int = 2, norm: Optional[str] = "ortho",
                  ref: float = 1.0, lifter: float = 0, **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mfcc_to_audio: :func:`mfcc_to_mel` then :func:`mel_to_audio`."""
    mel = mfcc_to_mel(mfcc, n_mels=n_mels, dct_type=dct_type, norm=norm, ref=ref, lifter=lifter)
    return mel_to_audio(mel, **kwargs)
