"""Plain-torch implementations: the oracle every fast backend is tested against.

Each function here is written for clarity, not speed, and works on any device in float32 or
float64. They assume validated inputs (the public functions in :mod:`ddfad_fast.ops.features` and
:mod:`ddfad_fast.ops.reconstruct` check shapes, dtypes and values) and register themselves as the
``reference`` backend of their op.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import dispatch, tables
from ..config import FeatureConfig


def preemphasis(waves: Tensor, coef: float) -> Tensor:
    """librosa.effects.preemphasis along the last axis: y[n] = x[n] - coef * x[n-1].

    The initial state is librosa's linear extrapolation, y[0] = x[0] + (2 x[0] - x[1]); a one-sample
    clip uses x[1] = 0. ``coef == 0`` returns the input unchanged.
    """
    if coef == 0:
        return waves
    second = waves[..., 1:2] if waves.shape[-1] > 1 else torch.zeros_like(waves[..., :1])
    first = waves[..., :1] + (2 * waves[..., :1] - second)
    return torch.cat([first, waves[..., 1:] - coef * waves[..., :-1]], dim=-1)


def deemphasis(waves: Tensor, coef: float, block: int = 256) -> Tensor:
    """Inverse of :func:`preemphasis` (librosa.effects.deemphasis): y[n] = x[n] + coef * y[n-1].

    Like librosa, the result is corrected for preemphasis's initial state, so
    ``deemphasis(preemphasis(x))`` returns x. Exact, computed block by block: inside a block of
    ``block`` samples the recursion is a lower-triangular matrix of powers of ``coef``; blocks are
    chained through their last sample. waves: (..., L) -> (..., L).
    """
    if coef == 0:
        return waves
    idx = torch.arange(block, device=waves.device)
    lag = (idx[:, None] - idx[None, :]).to(waves.dtype)
    coef_t = torch.tensor(coef, dtype=waves.dtype, device=waves.device)
    powers = torch.where(lag >= 0, coef_t ** lag.clamp_min(0), torch.zeros((), dtype=waves.dtype, device=waves.device))
    carry_gain = coef_t ** (idx + 1).to(waves.dtype)              # effect of the previous block's last output
    length = waves.shape[-1]
    padded = torch.nn.functional.pad(waves, (0, (-length) % block))
    chunks = padded.unflatten(-1, (-1, block))
    out = torch.empty_like(chunks)
    carry = torch.zeros_like(chunks[..., 0, :1])
    for j in range(chunks.shape[-2]):
        out[..., j, :] = chunks[..., j, :] @ powers.T + carry * carry_gain
        carry = out[..., j, -1:]
    out = out.flatten(-2)[..., :length]
    # undo the initial state 2 x[0] - x[1] of preemphasis; it decays as coef ** n
    second = waves[..., 1:2] if length > 1 else torch.zeros_like(waves[..., :1])
    state = ((2.0 - coef) * waves[..., :1] - second) / (3.0 - coef)
    return out - state * coef_t ** torch.arange(length, device=waves.device).to(waves.dtype)


def stft(waves: Tensor, n_fft: int, hop_length: int, win_length: int, window: str) -> Tensor:
    """Complex STFT, librosa conventions (centre, zero padding): (B, L) -> (B, n_fft // 2 + 1, tables.n_frames(L, ...))."""
    win = tables.as_tensor(tables.window(window, win_length, n_fft), waves.dtype, waves.device)
    return torch.stft(waves, n_fft, hop_length, win_length=n_fft, window=win, center=True, pad_mode="constant",
                      return_complex=True)


def istft(spec: Tensor, n_fft: int, hop_length: int, win_length: int, window: str, length: int) -> Tensor:
    """Inverse of :func:`stft` by windowed overlap-add: (B, F, T) complex -> (B, length)."""
    real = spec.real.dtype
    win = tables.as_tensor(tables.window(window, win_length, n_fft), real, spec.device)
    return torch.istft(spec, n_fft, hop_length, win_length=n_fft, window=win, center=True, length=length)


def power_to_db(power: Tensor, ref: float, amin: float, top_db: Optional[float]) -> Tensor:
    """10 log10(max(amin, S)) - 10 log10(max(amin, ref)), floored at (clip maximum - top_db) per clip.

    power: (B, ...) -> same shape; the floor is taken over every axis but the first.
    """
    db = 10.0 * torch.log10(power.clamp_min(amin)) - tables.db_reference(amin, ref)
    if top_db is None:
        return db
    peak = db.flatten(1).amax(dim=1).view(-1, *([1] * (db.dim() - 1)))
    return torch.maximum(db, peak - top_db)


def deltas(x: Tensor, order: int, width: int) -> Tensor:
    """Savitzky-Golay derivative along the last axis (librosa feature.delta, mode="interp"; see tables.delta_matrix)."""
    matrix = tables.as_tensor(tables.delta_matrix(x.shape[-1], width, order), x.dtype, x.device)
    return x @ matrix.T


def _mfcc(waves: Tensor, config: FeatureConfig) -> Tensor:
    """MFCCs of fixed-length clips: (B, L) float32/float64 -> (B, n_mfcc, config.n_frames(L)), same dtype."""
    spec = stft(preemphasis(waves, config.preemphasis), config.n_fft, config.hop_length, config.win_length,
                config.window)
    power = spec.real.square() + spec.imag.square()
    mel = tables.as_tensor(tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin),
                                           config.f_max), waves.dtype, waves.device)
    log_mel = power_to_db(mel @ power, config.ref, config.amin, config.top_db)
    dct = tables.as_tensor(tables.dct_matrix(config.n_mels, config.n_mfcc), waves.dtype, waves.device)
    return dct @ log_mel


@dispatch.recorded("mfcc", "reference")
def mfcc(waves: Tensor, config: FeatureConfig) -> Tensor:
    """MFCCs of fixed-length clips: (B, L) float32/float64 -> (B, n_mfcc, config.n_frames(L)), same dtype."""
    return _mfcc(waves, config)


@dispatch.recorded("fd_mfcc", "reference")
def fd_mfcc(waves: Tensor, config: FeatureConfig) -> Tensor:
    """FD-MFCC: MFCC, delta, delta-delta stacked: (B, L) -> (B, 3, n_mfcc, T), the dtype of ``waves``."""
    coeffs = _mfcc(waves, config)
    return torch.stack([coeffs, deltas(coeffs, 1, config.delta_width), deltas(coeffs, 2, config.delta_width)], dim=1)


@dispatch.recorded("griffin_lim", "reference")
def griffin_lim(magnitude: Tensor, n_fft: int, hop_length: int, win_length: int, window: str, n_iter: int,
                momentum: float, init_phase: Tensor, length: int) -> Tensor:
    """Fast Griffin-Lim (librosa.griffinlim semantics) with torch.stft / torch.istft.

    magnitude: (B, F, T) real; init_phase: (B, F, T) complex unit phasors -> signal (B, length).
    """
    eps = torch.finfo(magnitude.dtype).tiny
    coef = momentum / (1.0 + momentum)
    angles = init_phase.to(magnitude.dtype.to_complex()) * magnitude
    previous = None
    for _ in range(n_iter):
        inverse = istft(angles, n_fft, hop_length, win_length, window, length)
        rebuilt = stft(inverse, n_fft, hop_length, win_length, window)
        update = rebuilt if previous is None else rebuilt - coef * previous
        angles = magnitude * (update / (update.abs() + eps))
        previous = rebuilt
    return istft(angles, n_fft, hop_length, win_length, window, length)


dispatch.register("mfcc", "reference", mfcc, devices=("cpu", "cuda"))
dispatch.register("fd_mfcc", "reference", fd_mfcc, devices=("cpu", "cuda"))
dispatch.register("griffin_lim", "reference", griffin_lim, devices=("cpu", "cuda"))
