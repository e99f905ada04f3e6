"""Numba kernels of the CPU fast path (compiled on first call, cached on disk).

Only the post-FFT part of the MFCC lives here: power -> sparse Slaney mel -> dB with a per-clip
top_db floor -> DCT-II (ortho), fused per clip so each clip's spectrogram is read once, in cache.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=False)
def mel_db_dct(power: np.ndarray, band_start: np.ndarray, band_len: np.ndarray,
               band_weights: np.ndarray, dct: np.ndarray, amin: float, ref_db: float,
               top_db: float, out: np.ndarray) -> None:
    """Fused mel -> dB -> DCT for a batch.

    power: (B, T, F) float32/float64 power spectrum (frames major; sums accumulate in float64); band_start/band_len: (M,) first FFT bin and bin
    count of each mel band; band_weights: (M, W) the band's nonzero weights; dct: (n_mfcc, M)
    ortho DCT-II rows; top_db < 0 disables the floor. Writes out: (B, n_mfcc, T).
    """
    n_batch, n_frames, _ = power.shape
    n_mels = band_start.shape[0]
    n_mfcc = dct.shape[0]
    for b in numba.prange(n_batch):
        logmel = np.empty((n_frames, n_mels), dtype=np.float64)
        peak = -np.inf
        for t in range(n_frames):
            row = power[b, t]
            for m in range(n_mels):
                s = 0.0
                start = band_start[m]
                for j in range(band_len[m]):
                    s += band_weights[m, j] * row[start + j]
                v = 10.0 * math.log10(max(amin, s)) - ref_db
                logmel[t, m] = v
                if v > peak:
                    peak = v
        floor = peak - top_db if top_db >= 0.0 else -np.inf
        for t in range(n_frames):
            for m in range(n_mels):
                if logmel[t, m] < floor:
                    logmel[t, m] = floor
            for k in range(n_mfcc):
                s = 0.0
                for m in range(n_mels):
                    s += dct[k, m] * logmel[t, m]
                out[b, k, t] = s
