"""Triton kernels of FD-MFCC: framing before the FFT and the fused post-FFT stage.

Pipeline (design doc section 3): ``frame_waves`` (pre-emphasis + center zero padding + framing +
window, written as (B*T, n_fft) for ``torch.fft.rfft``) -> rfft (cuFFT) -> ``mfcc_from_spectrum``
(power, mel product, log10 with amin, per-clip top_db floor, DCT-II, both Savitzky-Golay deltas as
(T, T) matrices, one (B, 3, n_mfcc, T) write). Every ``tl.dot`` uses ``input_precision="ieee"``.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _frame_kernel(x_ptr, win_ptr, out_ptr, L, T, coef, zi_scale,
                  N_FFT: tl.constexpr, HOP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)                      # b * T + t
    b = row // T
    t = row % T
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    kmask = k < N_FFT
    n = t * HOP + k - N_FFT // 2                # sample index in the unpadded clip
    inside = kmask & (n >= 0) & (n < L)
    base = x_ptr + b.to(tl.int64) * L
    cur = tl.load(base + n, mask=inside, other=0.0)
    prev = tl.load(base + n - 1, mask=inside & (n >= 1), other=0.0)
    # librosa.effects.preemphasis: lfilter([1, -coef]) with initial state zi = 2*x[0] - x[1], so
    # y[0] = x[0] + zi (zi_scale = 1 when pre-emphasis is on, 0 when it is off)
    x1 = tl.load(base + 1, mask=L > 1, other=0.0)
    x0 = tl.load(base)
    y = tl.where(n == 0, cur + zi_scale * (2.0 * x0 - x1), cur - coef * prev)
    y = tl.where(inside, y, 0.0)
    w = tl.load(win_ptr + k, mask=kmask, other=0.0)
    tl.store(out_ptr + row.to(tl.int64) * N_FFT + k, y * w, mask=kmask)


def frame_waves(waves: torch.Tensor, window: torch.Tensor, hop_length: int, preemphasis: float) -> torch.Tensor:
    """Pre-emphasised, center-zero-padded, windowed frames.

    waves: (B, L) float32 contiguous; window: (n_fft,) float32 (win_length window zero-padded, centred).
    Returns (B * T, n_fft) float32 with T = 1 + L // hop_length.
    """
    B, L = waves.shape
    n_fft = window.shape[0]
    T = 1 + L // hop_length
    out = torch.empty((B * T, n_fft), dtype=waves.dtype, device=waves.device)
    block = min(triton.next_power_of_2(n_fft), 1024)
    grid = (B * T, triton.cdiv(n_fft, block))
    _frame_kernel[grid](waves, window, out, L, T, float(preemphasis), 1.0 if preemphasis else 0.0, N_FFT=n_fft, HOP=hop_length, BLOCK=block)
    return out


@triton.jit
def _mfcc_kernel(spec_ptr, mel_ptr, dct_ptr, d1_ptr, d2_ptr, out_ptr,
                 T, F, NMELS, NMFCC, amin, ref_db, top_db,
                 USE_TOP_DB: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr,
                 BM: tl.constexpr, BC: tl.constexpr):
    b = tl.program_id(0)
    t = tl.arange(0, BT)
    tmask = t < T
    m = tl.arange(0, BM)
    mmask = m < NMELS
    spec_base = spec_ptr + b.to(tl.int64) * T * F * 2
    acc = tl.zeros((BT, BM), dtype=tl.float32)
    for f0 in range(0, F, BF):
        f = f0 + tl.arange(0, BF)
        fmask = f < F
        offs = (t[:, None] * F + f[None, :]) * 2
        msk = tmask[:, None] & fmask[None, :]
        re = tl.load(spec_base + offs, mask=msk, other=0.0)
        im = tl.load(spec_base + offs + 1, mask=msk, other=0.0)
        power = re * re + im * im                                     # (BT, BF)
        melw = tl.load(mel_ptr + f[:, None] * NMELS + m[None, :],
                       mask=fmask[:, None] & mmask[None, :], other=0.0)  # (BF, BM)
        acc += tl.dot(power, melw, input_precision="ieee")
    log_mel = 3.0102999566398120 * tl.log2(tl.maximum(acc, amin)) - ref_db  # 10*log10
    valid = tmask[:, None] & mmask[None, :]
    if USE_TOP_DB:
        peak = tl.max(tl.max(tl.where(valid, log_mel, float("-inf")), axis=1), axis=0)
        log_mel = tl.maximum(log_mel, peak - top_db)
    log_mel = tl.where(valid, log_mel, 0.0)
    c = tl.arange(0, BC)
    cmask = c < NMFCC
    dct = tl.load(dct_ptr + m[:, None] * NMFCC + c[None, :], mask=mmask[:, None] & cmask[None, :], other=0.0)
    mfcc = tl.dot(log_mel, dct, input_precision="ieee")                # (BT, BC)
    out_base = out_ptr + b.to(tl.int64) * 3 * NMFCC * T
    offs_out = c[None, :] * T + t[:, None]
    omask = tmask[:, None] & cmask[None, :]
    tl.store(out_base + offs_out, mfcc, mask=omask)
    s = tl.arange(0, BT)
    dmask = tmask[:, None] & (s[None, :] < T)
    d1 = tl.load(d1_ptr + t[:, None] * T + s[None, :], mask=dmask, other=0.0)
    tl.store(out_base + NMFCC * T + offs_out, tl.dot(d1, mfcc, input_precision="ieee"), mask=omask)
    d2 = tl.load(d2_ptr + t[:, None] * T + s[None, :], mask=dmask, other=0.0)
    delta2 = tl.dot(d2, mfcc, input_precision="ieee")
    tl.store(out_base + 2 * NMFCC * T + offs_out, delta2, mask=omask)


def mfcc_from_spectrum(spec: torch.Tensor, mel_t: torch.Tensor, dct: torch.Tensor, d1: torch.Tensor,
                       d2: torch.Tensor, amin: float, ref: float, top_db: float | None) -> torch.Tensor:
    """FD-MFCC from the complex STFT.

    spec: (B, T, F) complex64 contiguous (rfft of the frames); mel_t: (F, n_mels) filterbank transposed;
    dct: (n_mels, n_mfcc) ortho DCT-II; d1, d2: (T, T) delta / delta-delta matrices (row t = output frame).
    Returns (B, 3, n_mfcc, T) float32: MFCC, delta, delta-delta. ``top_db`` is applied per clip.
    """
    B, T, F = spec.shape
    n_mels, n_mfcc = dct.shape
    out = torch.empty((B, 3, n_mfcc, T), dtype=torch.float32, device=spec.device)
    bt = max(16, triton.next_power_of_2(T))
    bm = max(16, triton.next_power_of_2(n_mels))
    bc = max(16, triton.next_power_of_2(n_mfcc))
    bf = 32 if bt >= 128 else 64
    ref_db = 10.0 * math.log10(max(amin, ref))
    _mfcc_kernel[(B,)](torch.view_as_real(spec), mel_t, dct, d1, d2, out,
                       T, F, n_mels, n_mfcc, float(amin), float(ref_db), float(top_db or 0.0),
                       USE_TOP_DB=top_db is not None, BT=bt, BF=bf, BM=bm, BC=bc,
                       num_warps=8 if bt >= 128 else 4)
    return out
