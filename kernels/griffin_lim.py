"""Triton kernels of the fast Griffin-Lim loop (librosa ``griffinlim`` semantics, center=True).

Two real frames share one complex FFT: frames r = 2p and 2p+1 of the flattened (B*T) frames are the
real and imaginary parts of pair p. One iteration, on (P, n_fft) complex pair buffers, P = ceil(B*T/2):

    z = ifft(Z, norm="forward")         cuFFT C2C, unscaled (1/n_fft is folded into the envelope)
    w = overlap_add_pairs(z)            inverse STFT as a gather over the frames covering each sample,
                                        divided by the window envelope, re-framed and windowed
    W = fft(w)                          cuFFT C2C
    Z = gla_step_pairs(W, W_prev, mag)  unpack the two real spectra, momentum, unit normalisation,
                                        times magnitude, pack again (Hermitian halves), W_prev = W

Why pairs: torch's C2R transform (irfft) copies its input first, and its default normalisation and
its out= variants each add a full pass; C2C transforms do neither. Bytes per iteration and spectrogram
bin (float32): ifft 8 + 8, overlap-add 8 + 8, fft 8 + 8, step 8 + 8 + 4 read and 8 written: 76,
against 124 for irfft(out=) / rfft(out=) with per-frame kernels and the fused floor of 36
(docs/architecture.md section 5). Nothing synchronises with the host, so the loop can be captured in a
CUDA graph.

``gla_step`` and ``overlap_add`` are the per-frame forms ((B, T, F) spectra, (B, T, n_fft) frames).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

STEP_BLOCK = 1024
OLA_BLOCK = 512
MAX_GRID_Y = 65535


@triton.jit
def _gla_step_kernel(x_ptr, cur_ptr, prev_ptr, mag_ptr, params_ptr, N, F,
                     HAS_NYQUIST: tl.constexpr, IS_FP64: tl.constexpr, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    if INDEX_64:
        i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    else:                                     # 32-bit: its modulo below is several times cheaper
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < N
    pair = tl.arange(0, 2)
    offs = 2 * i[:, None] + pair[None, :]                   # (BLOCK, 2): (re, im) as one 8/16-byte access
    cur = tl.load(cur_ptr + offs, mask=mask[:, None], other=0.0)
    prev = tl.load(prev_ptr + offs, mask=mask[:, None], other=0.0)
    mag = tl.load(mag_ptr + i, mask=mask, other=0.0)
    coef = tl.load(params_ptr)                # tensors, so float64 runs keep float64 constants
    eps = tl.load(params_ptr + 1)
    a = cur - coef * prev
    sq = tl.sum(a * a, axis=1)
    if IS_FP64:
        norm = tl.sqrt(sq)
    else:
        norm = tl.sqrt_rn(sq)                 # IEEE-rounded, not the approximate fp32 sqrt
    out = a * (mag / (norm + eps))[:, None]
    # an inverse real FFT reads only the real part of the DC and Nyquist bins: store them real
    k = i % F
    if HAS_NYQUIST:
        real_only = (k == 0) | (k == F - 1)
    else:
        real_only = k == 0
    out = tl.where(real_only[:, None] & (pair[None, :] == 1), 0.0, out)
    tl.store(x_ptr + offs, out, mask=mask[:, None])


def gla_step(x: torch.Tensor, rebuilt: torch.Tensor, prev: torch.Tensor, magnitude: torch.Tensor,
             params: torch.Tensor, n_fft: int) -> None:
    """x <- magnitude * a / (|a| + eps), a = rebuilt - coef * prev, written in place.

    x, rebuilt, prev: complex (B, T, F) contiguous; magnitude: real (B, T, F) of the same precision;
    params: (2,) real tensor [coef, eps] with coef = momentum / (1 + momentum) and eps the dtype's tiny.
    The imaginary parts of the DC bin (and of the Nyquist bin for even n_fft) are stored as zero.
    """
    n = magnitude.numel()
    F = magnitude.shape[-1]
    _gla_step_kernel[(triton.cdiv(n, STEP_BLOCK),)](torch.view_as_real(x), torch.view_as_real(rebuilt),
                                                    torch.view_as_real(prev), magnitude, params, n, F,
                                                    HAS_NYQUIST=n_fft % 2 == 0,
                                                    IS_FP64=magnitude.dtype == torch.float64,
                                                    INDEX_64=2 * n + STEP_BLOCK >= 2 ** 31, BLOCK=STEP_BLOCK)


@triton.jit
def _frame_offset(b, t, k, T, N_FFT: tl.constexpr, PAIRED: tl.constexpr):
    """Offset of sample k of frame t of clip b: (B, T, N) real, or paired (P, N, 2) (re: even, im: odd frames)."""
    r = b * T + t
    if PAIRED:
        return ((r >> 1) * N_FFT + k) * 2 + (r & 1)
    return r * N_FFT + k


@triton.jit
def _ola_kernel(frames_ptr, win_ptr, inv_env_ptr, out_ptr, B0, T, LEN, SIG_LEN, N_OUT,
                N_FFT: tl.constexpr, HOP: tl.constexpr, MAX_COVER: tl.constexpr,
                REFRAME: tl.constexpr, PAIRED: tl.constexpr, BLOCK: tl.constexpr):
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)      # output element within the clip
    b = B0 + tl.program_id(1).to(tl.int64)                  # clip
    jmask = j < N_OUT
    if REFRAME:
        k_out = j % N_FFT
        t_out = j // N_FFT
        n = t_out * HOP + k_out - N_FFT // 2                 # sample of the output signal
    else:
        n = j
    live = jmask & (n >= 0) & (n < LEN) & (n + N_FFT // 2 < SIG_LEN)
    p = n + N_FFT // 2                                        # position in the centre-padded signal
    t_last = tl.minimum(p // HOP, T - 1)
    acc = tl.zeros((BLOCK,), dtype=frames_ptr.dtype.element_ty)
    for c in tl.static_range(MAX_COVER):
        t = t_last - c
        k = p - t * HOP
        ok = live & (t >= 0) & (k < N_FFT)
        w = tl.load(win_ptr + k, mask=ok, other=0.0)
        v = tl.load(frames_ptr + _frame_offset(b, t, k, T, N_FFT, PAIRED), mask=ok, other=0.0)
        acc += w * v
    y = acc * tl.load(inv_env_ptr + p, mask=live, other=0.0)
    if REFRAME:
        y = y * tl.load(win_ptr + k_out, mask=jmask, other=0.0)
        tl.store(out_ptr + _frame_offset(b, t_out, k_out, T, N_FFT, PAIRED), y, mask=jmask)
    else:
        tl.store(out_ptr + b * N_OUT + j, y, mask=jmask)


def overlap_add(frames: torch.Tensor, window: torch.Tensor, inv_envelope: torch.Tensor, hop_length: int,
                length: int, reframe: bool, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Inverse STFT from time frames, as a gather (deterministic, no atomics).

    frames: (B, T, n_fft) real (irfft of the spectrum); window: (n_fft,); inv_envelope:
    (n_fft + hop*(T-1),) = 1 / sum of squared shifted windows where that sum exceeds tiny, else 1
    (times any scale the frames need, e.g. 1 / n_fft after an unscaled inverse FFT).
    reframe=False: returns the signal (B, length). reframe=True: returns the windowed, centre-zero-padded
    frames of that signal, (B, T, n_fft), ready for the next rfft. ``out``: optional preallocated result.
    """
    B, T, n_fft = frames.shape
    if out is None:
        out = torch.empty((B, T, n_fft) if reframe else (B, length), dtype=frames.dtype, device=frames.device)
    _launch_ola(frames, window, inv_envelope, out, B, T, n_fft, hop_length, length, reframe, paired=False)
    return out


def _launch_ola(frames, window, inv_envelope, out, B, T, n_fft, hop_length, length, reframe, paired) -> None:
    n_out = T * n_fft if reframe else length
    for b0 in range(0, B, MAX_GRID_Y):                         # grid axis 1 holds at most 65535 clips
        _ola_kernel[(triton.cdiv(n_out, OLA_BLOCK), min(MAX_GRID_Y, B - b0))](
            frames, window, inv_envelope, out, b0, T, length, n_fft + hop_length * (T - 1), n_out, N_FFT=n_fft,
            HOP=hop_length, MAX_COVER=triton.cdiv(n_fft, hop_length), REFRAME=reframe, PAIRED=paired,
            BLOCK=OLA_BLOCK)


def overlap_add_pairs(pairs: torch.Tensor, window: torch.Tensor, inv_envelope: torch.Tensor, batch: int,
                      n_frames: int, hop_length: int, length: int, out: torch.Tensor, reframe: bool) -> torch.Tensor:
    """:func:`overlap_add` on paired frames: pairs (P, n_fft) complex, frame r = b*T + t the real (r even) or
    imaginary (r odd) part of row r // 2. reframe=True writes the windowed frames into ``out`` (P, n_fft)
    complex at the same places (its other entries are left alone); reframe=False writes the signal
    ``out`` (B, length).
    """
    n_fft = pairs.shape[1]
    target = torch.view_as_real(out) if reframe else out
    _launch_ola(torch.view_as_real(pairs), window, inv_envelope, target, batch, n_frames, n_fft, hop_length, length,
                reframe, paired=True)
    return out


# ---- two real frames in one complex FFT: the packing and unpacking, written once ---------------------------
@triton.jit
def _unpack_pair(ukr, uki, unr, uni):
    """The spectra A, B of the real frames a, b of z = a + i b, at bin k, from Z = FFT(z) at bins k and N - k:
    A = (Z[k] + conj Z[N-k]) / 2, B = (Z[k] - conj Z[N-k]) / 2i. Returns (A.re, A.im, B.re, B.im)."""
    return 0.5 * (ukr + unr), 0.5 * (uki - uni), 0.5 * (uki + uni), -0.5 * (ukr - unr)


@triton.jit
def _store_pair(row_ptr, k, kn, ar, ai, br, bi, live, N_FFT: tl.constexpr):
    """Store the pair spectrum of one-sided spectra A, B at bins k (< F) of an interleaved (re, im) row:
    Z[k] = A + iB and, for 0 < k < N/2, Z[N-k] = conj(A) + i conj(B) (A, B real at the DC and Nyquist bins)."""
    tl.store(row_ptr + 2 * k, ar - bi, mask=live)
    tl.store(row_ptr + 2 * k + 1, ai + br, mask=live)
    mirror = live & (k >= 1) & (2 * k < N_FFT)
    tl.store(row_ptr + 2 * kn, ar + bi, mask=mirror)
    tl.store(row_ptr + 2 * kn + 1, br - ai, mask=mirror)


@triton.jit
def _pack_pairs_kernel(x_ptr, z_ptr, R, TOTAL, N_FFT: tl.constexpr, BLOCK: tl.constexpr):
    F = N_FFT // 2 + 1
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = i < TOTAL                                          # (pair, bin) flattened, bins fastest
    pair = i // F
    k = i - pair * F
    a = 2 * pair * F + k                                      # bin k of frames 2p and 2p + 1 of (R, F)
    ar = tl.load(x_ptr + 2 * a, mask=live, other=0.0)
    ai = tl.load(x_ptr + 2 * a + 1, mask=live, other=0.0)
    has_b = live & (2 * pair + 1 < R)                         # a missing last frame of an odd R is zero
    br = tl.load(x_ptr + 2 * (a + F), mask=has_b, other=0.0)
    bi = tl.load(x_ptr + 2 * (a + F) + 1, mask=has_b, other=0.0)
    _store_pair(z_ptr + pair * (2 * N_FFT), k, (N_FFT - k) % N_FFT, ar, ai, br, bi, live, N_FFT)


@triton.jit
def _gla_step_pairs_kernel(z_ptr, w_ptr, wp_ptr, mag_ptr, params_ptr, R, TOTAL,
                           N_FFT: tl.constexpr, IS_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                           BLOCK: tl.constexpr):
    F = N_FFT // 2 + 1                                       # constexpr arithmetic stays constexpr
    if INDEX_64:
        i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    else:
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < TOTAL                                          # (pair, bin) flattened, bins fastest
    pair = i // F                                             # divisions by constants: multiply-shifts
    k = i - pair * F
    kn = (N_FFT - k) % N_FFT
    row = pair * (2 * N_FFT)                                  # float offset of the pair's row
    coef = tl.load(params_ptr)
    eps = tl.load(params_ptr + 1)
    # U = W - coef * W_prev at bins k and N - k (linear, so the unpacking below may follow it)
    ukr = tl.load(w_ptr + row + 2 * k, mask=live, other=0.0) - coef * tl.load(wp_ptr + row + 2 * k, mask=live,
                                                                            other=0.0)
    uki = tl.load(w_ptr + row + 2 * k + 1, mask=live, other=0.0) - coef * tl.load(wp_ptr + row + 2 * k + 1,
                                                                                mask=live, other=0.0)
    unr = tl.load(w_ptr + row + 2 * kn, mask=live, other=0.0) - coef * tl.load(wp_ptr + row + 2 * kn, mask=live,
                                                                             other=0.0)
    uni = tl.load(w_ptr + row + 2 * kn + 1, mask=live, other=0.0) - coef * tl.load(wp_ptr + row + 2 * kn + 1,
                                                                                 mask=live, other=0.0)
    ar, ai, br, bi = _unpack_pair(ukr, uki, unr, uni)
    r_a = 2 * pair                                            # frame of A; B is frame r_a + 1
    mag_a = tl.load(mag_ptr + r_a * F + k, mask=live & (r_a < R), other=0.0)
    mag_b = tl.load(mag_ptr + (r_a + 1) * F + k, mask=live & (r_a + 1 < R), other=0.0)
    if IS_FP64:
        sa = mag_a / (tl.sqrt(ar * ar + ai * ai) + eps)
        sb = mag_b / (tl.sqrt(br * br + bi * bi) + eps)
    else:
        sa = mag_a / (tl.sqrt_rn(ar * ar + ai * ai) + eps)
        sb = mag_b / (tl.sqrt_rn(br * br + bi * bi) + eps)
    ar, ai, br, bi = ar * sa, ai * sa, br * sb, bi * sb
    _store_pair(z_ptr + row, k, kn, ar, ai, br, bi, live, N_FFT)


def gla_step_pairs(z: torch.Tensor, w: torch.Tensor, w_prev: torch.Tensor, magnitude: torch.Tensor,
                   params: torch.Tensor) -> None:
    """Z <- pack(mag * A / (|A| + eps)) for the two real frames of each pair, A = unpack(W - coef * W_prev).

    z, w, w_prev: (P, n_fft) complex pair spectra (w = fft of the paired frames); magnitude: (R, F) real,
    R = B*T <= 2P frames (a missing last frame of an odd R gets magnitude 0); params: (2,) [coef, eps].
    """
    P, n_fft = z.shape
    R, F = magnitude.shape
    total = P * F
    _gla_step_pairs_kernel[(triton.cdiv(total, STEP_BLOCK),)](
        torch.view_as_real(z), torch.view_as_real(w), torch.view_as_real(w_prev), magnitude, params, R, total,
        N_FFT=n_fft, IS_FP64=magnitude.dtype == torch.float64, INDEX_64=2 * P * n_fft + STEP_BLOCK >= 2 ** 31,
        BLOCK=STEP_BLOCK)


def pack_pairs(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(R, F) one-sided spectra with real DC / Nyquist bins -> (ceil(R/2), n_fft) pair spectra A + iB.

    Z[k] = A[k] + i B[k] for k < F and Z[n_fft - k] = conj(A[k]) + i conj(B[k]) (_store_pair, the packing the
    Griffin-Lim step uses too); a missing last frame of an odd R counts as zero.
    """
    R, F = x.shape
    P = (R + 1) // 2
    z = torch.empty((P, n_fft), dtype=x.dtype, device=x.device)
    total = P * F
    _pack_pairs_kernel[(triton.cdiv(total, STEP_BLOCK),)](torch.view_as_real(x.contiguous()), torch.view_as_real(z),
                                                           R, total, N_FFT=n_fft, BLOCK=STEP_BLOCK)
    return z
