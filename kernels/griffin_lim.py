"""Triton kernels of the fast Griffin-Lim loop (librosa ``griffinlim`` semantics, center=True).

State lives frame-major: spectra are (B, T, F) complex so cuFFT transforms contiguous rows.
One iteration: irfft (cuFFT) -> ``overlap_add(reframe=True)`` (inverse STFT as a gather over the
frames covering each sample, divided by the precomputed window envelope, then re-framed and windowed
for the next rfft) -> rfft (cuFFT) -> ``gla_step`` (momentum, unit normalisation, times magnitude,
written in place). No host synchronisation anywhere, so the loop can be captured in a CUDA graph.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gla_step_kernel(x_ptr, cur_ptr, prev_ptr, mag_ptr, coef_ptr, N, eps, IS_FP64: tl.constexpr,
                     BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < N
    cr = tl.load(cur_ptr + 2 * i, mask=mask, other=0.0)
    ci = tl.load(cur_ptr + 2 * i + 1, mask=mask, other=0.0)
    pr = tl.load(prev_ptr + 2 * i, mask=mask, other=0.0)
    pi = tl.load(prev_ptr + 2 * i + 1, mask=mask, other=0.0)
    mag = tl.load(mag_ptr + i, mask=mask, other=0.0)
    coef = tl.load(coef_ptr)                  # a tensor, so float64 runs keep a float64 coefficient
    ar = cr - coef * pr
    ai = ci - coef * pi
    if IS_FP64:
        norm = tl.sqrt(ar * ar + ai * ai)
    else:
        norm = tl.sqrt_rn(ar * ar + ai * ai)     # IEEE-rounded, not the approximate fp32 sqrt
    scale = mag / (norm + eps)
    tl.store(x_ptr + 2 * i, ar * scale, mask=mask)
    tl.store(x_ptr + 2 * i + 1, ai * scale, mask=mask)


def gla_step(x: torch.Tensor, rebuilt: torch.Tensor, prev: torch.Tensor, magnitude: torch.Tensor,
             momentum: float) -> None:
    """x <- magnitude * a / (|a| + tiny), a = rebuilt - momentum / (1 + momentum) * prev (in place).

    x, rebuilt, prev: complex (B, T, F) contiguous; magnitude: real (B, T, F) of the same precision.
    """
    real = torch.view_as_real(x)
    n = magnitude.numel()
    block = 1024
    eps = torch.finfo(torch.float32).tiny   # a float32 scalar argument: float32's tiny for both precisions
    coef = torch.full((1,), momentum / (1.0 + momentum), dtype=magnitude.dtype, device=magnitude.device)
    _gla_step_kernel[(triton.cdiv(n, block),)](real, torch.view_as_real(rebuilt), torch.view_as_real(prev),
                                               magnitude, coef, n, eps,
                                               IS_FP64=magnitude.dtype == torch.float64, BLOCK=block)


@triton.jit
def _ola_kernel(frames_ptr, win_ptr, inv_env_ptr, out_ptr, T, LEN, SIG_LEN, N_OUT,
                N_FFT: tl.constexpr, HOP: tl.constexpr, MAX_COVER: tl.constexpr,
                REFRAME: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    jmask = j < N_OUT
    if REFRAME:
        t_out = j // N_FFT
        k_out = j % N_FFT
        n = t_out * HOP + k_out - N_FFT // 2                     # sample of the output signal
    else:
        n = j
    live = jmask & (n >= 0) & (n < LEN) & (n + N_FFT // 2 < SIG_LEN)
    p = n + N_FFT // 2                                         # position in the padded signal
    t_last = tl.minimum(p // HOP, T - 1)
    base = frames_ptr + b.to(tl.int64) * T * N_FFT
    acc = tl.zeros((BLOCK,), dtype=frames_ptr.dtype.element_ty)
    for c in range(MAX_COVER):
        t = t_last - c
        k = p - t * HOP
        ok = live & (t >= 0) & (k < N_FFT)
        w = tl.load(win_ptr + k, mask=ok, other=0.0)
        v = tl.load(base + t * N_FFT + k, mask=ok, other=0.0)
        acc += w * v
    y = acc * tl.load(inv_env_ptr + p, mask=live, other=0.0)
    if REFRAME:
        y = y * tl.load(win_ptr + k_out, mask=jmask, other=0.0)
    tl.store(out_ptr + b.to(tl.int64) * N_OUT + j, y, mask=jmask)


def overlap_add(frames: torch.Tensor, window: torch.Tensor, inv_envelope: torch.Tensor, hop_length: int,
                length: int, reframe: bool) -> torch.Tensor:
    """Inverse STFT from time frames, as a gather (deterministic, no atomics).

    frames: (B, T, n_fft) real (irfft of the spectrum); window: (n_fft,); inv_envelope:
    (n_fft + hop*(T-1),) = 1 / sum of squared shifted windows where that sum exceeds tiny, else 1.
    reframe=False: returns the signal (B, length). reframe=True: returns the windowed, center-zero-padded
    frames of that signal, (B, T, n_fft), ready for the next rfft.
    """
    B, T, n_fft = frames.shape
    n_out = T * n_fft if reframe else length
    out = torch.empty((B, T, n_fft) if reframe else (B, length), dtype=frames.dtype, device=frames.device)
    block = 512
    sig_len = n_fft + hop_length * (T - 1)
    _ola_kernel[(B, triton.cdiv(n_out, block))](frames, window, inv_envelope, out, T, length, sig_len, n_out,
                                                N_FFT=n_fft, HOP=hop_length,
                                                MAX_COVER=triton.cdiv(n_fft, hop_length), REFRAME=reframe,
                                                BLOCK=block)
    return out
