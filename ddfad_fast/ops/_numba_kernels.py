"""Numba kernels of the ``numba`` CPU backend (compiled on first call, cached on disk).

Feature pipeline: :func:`frame_waves` (pre-emphasis, centre zero padding, window) -> torch rfft ->
:func:`spectrum_to_features` (power -> sparse mel -> dB with a per-clip top_db floor -> DCT ->
deltas, fused per clip). Griffin-Lim: torch irfft -> :func:`overlap_add` -> torch rfft ->
:func:`gla_step`. Every kernel runs in parallel over clips (or bins) with ``prange``; the frame
count, the window's support and the tables come from :mod:`ddfad_fast.ops.tables` (through ``cpu_backend``).
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def frame_waves(waves: np.ndarray, window: np.ndarray, lo: int, hi: int, hop: int, n_frames: int,
                coef: float) -> np.ndarray:
    """Pre-emphasised (librosa's initial state), centre-zero-padded, windowed frames: (B, L) -> (B, T, n_fft).

    The window's taps outside [lo, hi) are zero (dsp.window_support); T = n_frames (dsp.n_frames).
    """
    n_batch, length = waves.shape
    n_fft = window.shape[0]
    half = n_fft // 2
    out = np.zeros((n_batch, n_frames, n_fft), dtype=waves.dtype)
    c = waves.dtype.type(coef)
    for b in numba.prange(n_batch):
        x = waves[b]
        second = x[1] if length > 1 else x.dtype.type(0)
        first = x[0] if coef == 0.0 else x[0] + (2 * x[0] - second)
        for t in range(n_frames):
            base = t * hop - half
            k0 = min(max(lo, -base), hi)
            k1 = max(k0, min(hi, length - base))
            if k0 < k1 and base + k0 == 0:
                out[b, t, k0] = first * window[k0]
                k0 += 1
            row = out[b, t]
            for k in range(k0, k1):
                row[k] = (x[base + k] - c * x[base + k - 1]) * window[k]
    return out


@numba.njit(parallel=True, cache=True)
def spectrum_to_features(spec: np.ndarray, mel_bands: np.ndarray, mel_weights: np.ndarray, dct: np.ndarray,
                         delta_start: np.ndarray, delta_coef: np.ndarray, amin: float, ref_db: float,
                         top_db: float, with_deltas: bool) -> np.ndarray:
    """spec (B, T, F, 2) real view of the rfft -> (B, 3, n_mfcc, T) (channel 0 only without deltas).

    mel_bands (M, 2) bins [lo, hi), mel_weights (M, W); dct (n_mfcc, M); delta_start (T,),
    delta_coef (2, W, T): band forms of the dsp constants. top_db < 0 disables the floor.
    """
    n_batch, n_frames, n_freqs, _ = spec.shape
    n_mels = mel_bands.shape[0]
    n_mfcc = dct.shape[0]
    width = delta_coef.shape[1]
    span = min(width, n_frames)
    out = np.empty((n_batch, 3 if with_deltas else 1, n_mfcc, n_frames), dtype=spec.dtype)
    for b in numba.prange(n_batch):
        power = np.empty(n_freqs, dtype=spec.dtype)
        log_mel = np.empty((n_mels, n_frames), dtype=spec.dtype)
        peak = -np.inf
        for t in range(n_frames):
            for f in range(n_freqs):
                power[f] = spec[b, t, f, 0] * spec[b, t, f, 0] + spec[b, t, f, 1] * spec[b, t, f, 1]
            for m in range(n_mels):
                first = mel_bands[m, 0]
                acc = spec.dtype.type(0)
                for j in range(mel_bands[m, 1] - first):
                    acc += mel_weights[m, j] * power[first + j]
                v = 10.0 * math.log10(max(amin, acc)) - ref_db
                log_mel[m, t] = v
                peak = max(peak, v)
        if top_db >= 0.0:
            floor = peak - top_db
            for m in range(n_mels):
                for t in range(n_frames):
                    log_mel[m, t] = max(log_mel[m, t], floor)
        for k in range(n_mfcc):
            for t in range(n_frames):
                out[b, 0, k, t] = 0
            for m in range(n_mels):
                d = dct[k, m]
                for t in range(n_frames):
                    out[b, 0, k, t] += d * log_mel[m, t]
        if with_deltas:
            for order in range(2):
                for k in range(n_mfcc):
                    for t in range(n_frames):
                        acc = spec.dtype.type(0)
                        s = delta_start[t]
                        for j in range(span):
                            acc += delta_coef[order, j, t] * out[b, 0, k, s + j]
                        out[b, order + 1, k, t] = acc
    return out


@numba.njit(parallel=True, cache=True)
def overlap_add(frames: np.ndarray, window: np.ndarray, lo: int, hi: int, inv_env: np.ndarray, hop: int,
                length: int, reframe: bool) -> np.ndarray:
    """Inverse STFT of frames (B, T, n_fft) by overlap-add, normalised by inv_env, cropped to ``length``.

    The window's taps outside [lo, hi) are zero (dsp.window_support). reframe=False: the signal
    (B, 1, length); True: its windowed, centre-zero-padded frames (B, T, n_fft).
    """
    n_batch, n_frames, n_fft = frames.shape
    half = n_fft // 2
    env_len = n_fft + hop * (n_frames - 1)
    total = max(env_len, half + length)
    stop = half + length
    out = np.zeros((n_batch, n_frames, n_fft) if reframe else (n_batch, 1, length), dtype=frames.dtype)
    for b in numba.prange(n_batch):
        signal = np.zeros(total, dtype=frames.dtype)
        for t in range(n_frames):
            for k in range(lo, hi):
                signal[t * hop + k] += window[k] * frames[b, t, k]
        for p in range(half, min(stop, env_len)):
            signal[p] *= inv_env[p]
        signal[:half] = 0
        signal[stop:] = 0
        if reframe:
            for t in range(n_frames):
                for k in range(lo, hi):
                    out[b, t, k] = signal[t * hop + k] * window[k]
        else:
            out[b, 0, :] = signal[half:stop]
    return out


@numba.njit(parallel=True, cache=True)
def gla_step(x: np.ndarray, cur: np.ndarray, prev: np.ndarray, mag: np.ndarray, coef: float) -> None:
    """x <- mag * a / (|a| + tiny), a = cur - coef * prev. x, cur, prev: (B, T, F, 2) real views; mag (B, T, F)."""
    n_batch, n_frames, n_freqs = mag.shape
    eps = np.finfo(mag.dtype).tiny
    c = mag.dtype.type(coef)
    for b in numba.prange(n_batch):
        for t in range(n_frames):
            for f in range(n_freqs):
                ar = cur[b, t, f, 0] - c * prev[b, t, f, 0]
                ai = cur[b, t, f, 1] - c * prev[b, t, f, 1]
                scale = mag[b, t, f] / (math.sqrt(ar * ar + ai * ai) + eps)
                x[b, t, f, 0] = ar * scale
                x[b, t, f, 1] = ai * scale
