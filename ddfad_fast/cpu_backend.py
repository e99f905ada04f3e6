"""CPU fast path: registers the ``numba`` backend of op ``mfcc``.

Pipeline per batch: pre-emphasis and a batched real FFT of the windowed, centre-padded frames in
torch (MKL), then one fused numba kernel per clip (sparse Slaney mel, dB with a per-clip top_db
floor, DCT-II ortho; see ``_numba_kernels.mel_db_dct``). Importing this module without numba raises
ImportError, which the dispatcher treats as "registers nothing".
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

import numpy as np
import torch

from . import backends
from ._numba_kernels import mel_db_dct
from .config import FeatureConfig


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    log_part = 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = 200.0 * m / 3.0
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, lin)


@lru_cache(maxsize=16)
def _constants(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, n_mfcc: int,
               win_length: int, window: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """Sparse Slaney mel bands (start, length, weights (M, W)), DCT (n_mfcc, M), window (n_fft,)."""
    freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - freqs[None, :]
    weights = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    start = np.zeros(n_mels, dtype=np.int64)
    length = np.zeros(n_mels, dtype=np.int64)
    for i in range(n_mels):
        nz = np.nonzero(weights[i])[0]
        if nz.size:
            start[i], length[i] = nz[0], nz[-1] - nz[0] + 1
    band = np.zeros((n_mels, max(1, int(length.max()))))
    for i in range(n_mels):
        band[i, :length[i]] = weights[i, start[i]:start[i] + length[i]]
    k = np.arange(n_mfcc)[:, None]
    m = np.arange(n_mels)[None, :]
    dct = np.cos(np.pi * k * (2 * m + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    dct[0] *= 1.0 / math.sqrt(2.0)
    n = torch.arange(win_length, dtype=torch.float64)
    if window == "hann":
        win = 0.5 - 0.5 * torch.cos(2 * math.pi * n / win_length)
    else:
        win = 0.54 - 0.46 * torch.cos(2 * math.pi * n / win_length)
    left = (n_fft - win_length) // 2
    full = torch.zeros(n_fft, dtype=torch.float64)
    full[left:left + win_length] = win
    return start, length, band, dct, full


def _power_frames(waves: torch.Tensor, config: FeatureConfig, window: torch.Tensor) -> torch.Tensor:
    """Pre-emphasis, centre padding, framing, window, rFFT, |.|^2 -> (B, T, F), waves' dtype."""
    x = waves
    if config.preemphasis:
        # librosa passes zi = 2*y0 - y1 to lfilter as its state, so out[0] = y0 + zi
        zi = 2 * x[:, :1] - x[:, 1:2] if x.shape[1] > 1 else x[:, :1]
        prev = torch.cat([-zi / config.preemphasis, x[:, :-1]], dim=1)
        x = x - config.preemphasis * prev
    pad = config.n_fft // 2
    x = torch.nn.functional.pad(x, (pad, pad))
    # Only the win_length nonzero window taps are framed; rfft zero-pads to n_fft. That shifts each
    # frame circularly by the window's left offset, which leaves the power spectrum unchanged.
    n_frames = 1 + (x.shape[1] - config.n_fft) // config.hop_length
    left = (config.n_fft - config.win_length) // 2
    taps = x[:, left:left + (n_frames - 1) * config.hop_length + config.win_length]
    frames = taps.unfold(1, config.win_length, config.hop_length) * window[left:left + config.win_length].to(x.dtype)
    spec = torch.fft.rfft(frames, n=config.n_fft, dim=-1)
    return spec.real.square() + spec.imag.square()


def mfcc(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """MFCCs of ``waves`` (B, L) float32/float64 -> (B, n_mfcc, T) in the waves' dtype."""
    fmax = config.fmax if config.fmax is not None else config.sample_rate / 2.0
    start, length, band, dct, window = _constants(
        config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), float(fmax),
        config.n_mfcc, config.win_length, config.window)
    power = _power_frames(waves, config, window).contiguous().numpy()
    out = np.empty((power.shape[0], config.n_mfcc, power.shape[1]), dtype=power.dtype)
    ref_db = 10.0 * math.log10(max(config.amin, config.ref))
    top_db = -1.0 if config.top_db is None else float(config.top_db)
    mel_db_dct(power, start, length, band, dct, float(config.amin), ref_db, top_db, out)
    return torch.from_numpy(out)


backends.register("mfcc", "numba", mfcc, devices=("cpu",))
