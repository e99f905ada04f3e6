"""Every constant of the DSP pipeline, computed once in float64 here and passed into every backend.

The frame count, the window and its non-zero taps, the mel filterbank (dense and in band form),
the DCT, the delta tables (dense and in band form), the dB reference and the inverse-STFT envelope
are derived in this module only; the reference, the C++, numba, Triton and CUDA kernels receive
them (:func:`feature_tables` gathers those of one FeatureConfig and clip length) and never re-derive
them. Arrays are numpy (float64 unless said; cached: treat them as read-only) and follow librosa
0.10/0.11 exactly: centred frames, periodic windows centred in ``n_fft``, Slaney mel scale with
Slaney area normalisation, orthonormal DCT-II, Savitzky-Golay deltas with ``mode="interp"`` edges.
:func:`as_tensor` moves one to a device and dtype, cached per (array, dtype, device), so the device
copies exist before a CUDA graph is captured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Tuple

import numpy as np
import torch

from ..config import n_frames  # noqa: F401  (the frame count lives beside the config it belongs to)
from ..errors import ParameterError

WINDOWS = ("hann", "hamming")


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


@lru_cache(maxsize=64)
def window_support(name: str, win_length: int, n_fft: int) -> Tuple[int, int]:
    """(lo, hi): the taps of :func:`window` outside [lo, hi) are zero (a periodic Hann's first tap is zero too)."""
    nonzero = np.flatnonzero(window(name, win_length, n_fft))
    return (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (0, 0)


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


@lru_cache(maxsize=64)
def mel_bands(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`mel_filterbank` in band form: (ranges, weights).

    ranges (n_mels, 2) int64: the non-zero bins [lo, hi) of each band (lo = hi = 0 for an empty band);
    weights (n_mels, W) float64: band m's weights of bins lo .. hi - 1, zero-padded to the widest band W.
    """
    bank = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    ranges = np.zeros((n_mels, 2), dtype=np.int64)
    for m, row in enumerate(bank):
        nonzero = np.flatnonzero(row)
        if nonzero.size:
            ranges[m] = nonzero[0], nonzero[-1] + 1
    weights = np.zeros((n_mels, max(1, int((ranges[:, 1] - ranges[:, 0]).max()))))
    for m, (lo, hi) in enumerate(ranges):
        weights[m, :hi - lo] = bank[m, lo:hi]
    return ranges, weights


@lru_cache(maxsize=64)
def mel_groups(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, group: int) -> np.ndarray:
    """(ceil(n_mels / group), 2) int64: the bins [lo, hi) where a band of each group of ``group`` bands is non-zero."""
    ranges = mel_bands(sample_rate, n_fft, n_mels, fmin, fmax)[0]
    out = np.zeros(((n_mels + group - 1) // group, 2), dtype=np.int64)
    for g in range(out.shape[0]):
        rows = ranges[g * group:(g + 1) * group]
        rows = rows[rows[:, 1] > rows[:, 0]]
        if rows.size:
            out[g] = rows[:, 0].min(), rows[:, 1].max()
    return out


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


@lru_cache(maxsize=256)
def delta_bands(n_frames: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Deltas of order 1 and 2 in band form: (start, coef), the table every delta kernel reads.

    start (T,) int64: the first frame of output frame t's window; coef (2, width, T) float64:
    ``delta[order][t] = sum_j coef[order - 1, j, t] * x[start[t] + j]``. Rows j >= min(width, T) are
    zero (a clip shorter than ``width``, see :func:`delta_matrix`); ``start[t] + j`` may then pass the
    last frame, so kernels clamp it to T - 1. Equals ``delta_matrix(T, width, order)`` exactly.
    """
    span = min(width, n_frames)
    start = np.clip(np.arange(n_frames) - width // 2, 0, n_frames - span).astype(np.int64)
    coef = np.zeros((2, width, n_frames))
    rows = np.arange(n_frames)
    cols = start[None, :] + np.arange(span)[:, None]                # (span, T)
    for i, order in enumerate((1, 2)):
        matrix = delta_matrix(n_frames, width, order)
        coef[i, :span] = matrix[rows[None, :], cols]
        rebuilt = np.zeros_like(matrix)
        rebuilt[rows[None, :], cols] = coef[i, :span]
        if not np.array_equal(rebuilt, matrix):
            raise AssertionError(f"delta matrix of {n_frames} frames is not banded with width {span}")
    return start, coef


def db_reference(amin: float, ref: float) -> float:
    """The dB of the reference power: features are 10 log10(max(amin, S)) - db_reference(amin, ref)."""
    return 10.0 * math.log10(max(amin, ref))


@dataclass(frozen=True, eq=False)
class FeatureTables:
    """The constants of one FeatureConfig and clip length that every fd_mfcc backend receives (numpy, cached)."""

    n_frames: int                       # T, centred frames (:func:`n_frames`)
    window: np.ndarray                  # (n_fft,) float64
    window_support: Tuple[int, int]     # the window's non-zero taps [lo, hi)
    mel: np.ndarray                     # (n_mels, n_fft // 2 + 1) float64, dense
    mel_bands: np.ndarray               # (n_mels, 2) int64 [lo, hi) of each band
    mel_weights: np.ndarray             # (n_mels, W) float64, each band's weights from its lo
    dct: np.ndarray                     # (n_mfcc, n_mels) float64
    delta_start: np.ndarray             # (T,) int64
    delta_coef: np.ndarray              # (2, delta_width, T) float64
    ref_db: float                       # dB of the reference power (:func:`db_reference`)


@lru_cache(maxsize=128)
def feature_tables(config, length: int) -> FeatureTables:
    """The tables of ``config`` (a FeatureConfig: centred frames, zero padding) for clips of ``length`` samples."""
    if length < 1:
        raise ParameterError(f"need at least one sample, got length {length}")
    frames = n_frames(length, config.n_fft, config.hop_length)
    mel_args = (config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max)
    ranges, weights = mel_bands(*mel_args)
    start, coef = delta_bands(frames, config.delta_width)
    return FeatureTables(
        n_frames=frames,
        window=window(config.window, config.win_length, config.n_fft),
        window_support=window_support(config.window, config.win_length, config.n_fft),
        mel=mel_filterbank(*mel_args), mel_bands=ranges, mel_weights=weights,
        dct=dct_matrix(config.n_mels, config.n_mfcc), delta_start=start, delta_coef=coef,
        ref_db=db_reference(config.amin, config.ref))


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


_CACHED = (window, window_support, mel_filterbank, mel_bands, mel_groups, dct_matrix, delta_matrix, delta_bands,
           feature_tables, inverse_envelope)


def clear_caches() -> None:
    """Forget every cached table (a test that perturbs a builder calls this before and after)."""
    for cached in _CACHED:
        cached.cache_clear()
