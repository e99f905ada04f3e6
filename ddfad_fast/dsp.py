"""Constant matrices of the DSP pipeline, computed once in float64 and shared by every backend.

Every function here returns numpy float64 arrays (cached: treat them as read-only) and follows
librosa 0.10/0.11 exactly: periodic windows centred in ``n_fft``, Slaney mel scale with Slaney
area normalisation, orthonormal DCT-II, Savitzky-Golay deltas with ``mode="interp"`` edges.
:func:`as_tensor` moves one to a device and dtype, cached per (array, dtype, device).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, Tuple

import numpy as np
import torch

from .errors import ParameterError

WINDOWS = ("hann", "hamming")


def n_frames(length: int, n_fft: int, hop_length: int) -> int:
    """Frames of a centred STFT (n_fft // 2 zeros on each side) of ``length`` samples."""
    return 1 + (length + 2 * (n_fft // 2) - n_fft) // hop_length


def istft_length(n_frames: int, n_fft: int, hop_length: int) -> int:
    """Default signal length of a centred inverse STFT of ``n_frames`` frames (librosa's ``length=None``)."""
    return hop_length * (n_frames - 1) + n_fft % 2


@lru_cache(maxsize=64)
def window(name: str, win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann or Hamming window of ``win_length`` samples, zero-padded (centred) to ``n_fft``: (n_fft,)."""
    if name not in WINDOWS:
        raise ParameterError(f"window must be one of {WINDOWS}, got {name!r}")
    if not 0 < win_length <= n_fft:
        raise ParameterError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
    n = np.arange(win_length)
    a0 = 0.5 if name == "hann" else 0.54
    taps = a0 - (1.0 - a0) * np.cos(2.0 * np.pi * n / win_length)
    out = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    out[start:start + win_length] = taps
    return out


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    linear = 3.0 * freq / 200.0
    logarithmic = 15.0 + np.log(np.maximum(freq, 1e-300) / 1000.0) / log_step
    return np.where(freq >= 1000.0, logarithmic, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), 200.0 * mel / 3.0)


@lru_cache(maxsize=64)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney mel filterbank with Slaney (area) normalisation: (n_mels, n_fft // 2 + 1), like librosa.filters.mel."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)      # k * sr / n_fft: below sr / 2 for odd n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_ARRAY_CACHE: Dict[Tuple[str, int], Tuple[np.ndarray, np.ndarray]] = {}


def _derived(kind: str, array: np.ndarray, make) -> np.ndarray:
    key = (kind, id(array))
    cached = _ARRAY_CACHE.get(key)
    if cached is None or cached[0] is not array:      # the cache holds the array, so its id stays unique
        cached = (array, make(array))
        _ARRAY_CACHE[key] = cached
    return cached[1]


def pseudo_inverse(matrix: np.ndarray) -> np.ndarray:
    """Moore-Penrose pseudo-inverse of a cached constant (e.g. the mel filterbank), cached."""
    return _derived("pinv", matrix, np.linalg.pinv)


def spectral_norm(matrix: np.ndarray) -> float:
    """Largest singular value of a cached constant, cached."""
    return float(_derived("norm2", matrix, lambda m: np.array(np.linalg.norm(m, 2))))


@lru_cache(maxsize=64)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II rows: (n_mfcc, n_mels), so ``mfcc = dct @ log_mel``; its transpose inverts it (DCT-III)."""
    k = np.arange(n_mfcc)[:, None]
    m = np.arange(n_mels)[None, :]
    basis = np.cos(np.pi * k * (2 * m + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[0] = math.sqrt(1.0 / n_mels)
    return basis


@lru_cache(maxsize=256)
def delta_matrix(n_frames: int, width: int, order: int) -> np.ndarray:
    """(T, T) matrix ``D`` with ``delta = x @ D.T`` along time.

    Equals librosa ``feature.delta(x, width, order, mode="interp")``: each output frame is the
    ``order``-th derivative, at that frame, of the degree-``order`` least-squares polynomial through
    the ``width`` frames around it (at the edges, the first / last ``width`` frames of the clip).

    Short-clip rule (librosa raises there): a clip of fewer than ``width`` frames is edge-padded
    (first and last frame repeated) to ``width`` frames, differentiated, and cropped back.
    """
    if width < 3 or width % 2 == 0:
        raise ParameterError(f"delta width must be an odd integer >= 3, got {width}")
    if order not in (1, 2):
        raise ParameterError(f"delta order must be 1 or 2, got {order}")
    if n_frames < 1:
        raise ParameterError(f"need at least one frame, got {n_frames}")
    if n_frames < width:
        left = (width - n_frames) // 2
        source = np.clip(np.arange(width) - left, 0, n_frames - 1)
        expand = np.zeros((width, n_frames))
        expand[np.arange(width), source] = 1.0
        return delta_matrix(width, width, order)[left:left + n_frames] @ expand
    offsets = np.arange(width, dtype=np.float64)
    fit = np.linalg.pinv(offsets[:, None] ** np.arange(order + 1)[None, :])     # (order + 1, width)
    out = np.zeros((n_frames, n_frames))
    half = width // 2
    for t in range(n_frames):
        start = min(max(t - half, 0), n_frames - width)
        x0 = t - start
        derivative = np.array([math.factorial(j) / math.factorial(j - order) * x0 ** (j - order) if j >= order else 0.0
                               for j in range(order + 1)])
        out[t, start:start + width] = derivative @ fit
    return out


@lru_cache(maxsize=64)
def inverse_envelope(window_name: str, win_length: int, n_fft: int, hop_length: int, n_frames: int) -> np.ndarray:
    """1 / (sum of squared shifted windows) over the centre-padded signal, 1 where that sum is below tiny.

    Shape (n_fft + hop_length * (n_frames - 1),): the normalisation of an inverse STFT by overlap-add.
    """
    win_sq = window(window_name, win_length, n_fft) ** 2
    envelope = np.zeros(n_fft + hop_length * (n_frames - 1))
    for t in range(n_frames):
        envelope[t * hop_length:t * hop_length + n_fft] += win_sq
    tiny = np.finfo(np.float32).tiny
    return np.where(envelope > tiny, 1.0 / np.where(envelope > tiny, envelope, 1.0), 1.0)


_TENSORS: Dict[Tuple[int, torch.dtype, str], Tuple[np.ndarray, torch.Tensor]] = {}


def as_tensor(array: np.ndarray, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """``array`` (one of the cached constants above) as a contiguous tensor, cached per dtype and device."""
    key = (id(array), dtype, str(torch.device(device)))
    cached = _TENSORS.get(key)
    if cached is None or cached[0] is not array:      # the cache holds the array, so its id stays unique
        cached = (array, torch.tensor(np.ascontiguousarray(array), dtype=dtype, device=device))
        _TENSORS[key] = cached
    return cached[1]
