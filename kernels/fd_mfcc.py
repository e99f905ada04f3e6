"""Triton kernels of FD-MFCC: framing before the FFT, and the post-FFT stage in two tiled passes.

Pipeline (docs/architecture.md section 3):

1. ``frame_waves``: pre-emphasis + centre zero padding + framing + window, written as (B*T, n_fft)
   for ``torch.fft.rfft`` (cuFFT).
2. ``mel_db``: one program per (clip, tile of ``MEL_TILE`` frames): power |X|^2, the mel product as
   ``tl.dot`` over the non-zero frequency range of each group of 16 mel bands only (the Slaney
   filterbank is banded, so this does about a quarter of the dense product's work), and
   10 log10(max(mel, amin)) - 10 log10(max(amin, ref)). Writes dB (B, T, n_mels) and the maximum of each tile.
3. ``dct_deltas``: one program per (clip, tile of ``OUT_TILE`` frames): the clip's peak from the tile
   maxima (per-clip top_db floor), the floored dB of the tile and of the ``delta_width`` frames each
   output frame's Savitzky-Golay window needs (gathered rows of the dB scratch, which is complete
   once pass 2 has finished), the deltas in the dB domain (they commute with the DCT, both being
   linear along different axes), then three DCT products and one (B, 3, n_mfcc, T) write.

Tiling time makes clips of any length work; nothing depends on the batch, so a clip's result does
not depend on its neighbours. Every ``tl.dot`` uses ``input_precision="ieee"`` (no TF32). The frame
count T, the tables and the dB reference are arguments (ddfad_fast/dsp.py computes them).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MEL_TILE = 64          # frames per program of the mel pass
MEL_GROUP = 16         # mel bands per dot (the N dimension of the mel product)
FREQ_BLOCK = 32        # frequency bins per dot (its K dimension)
OUT_TILE = 64          # frames per program of the DCT / delta pass
MEL_BLOCK = 16         # mel bands per step of the DCT / delta pass
TEN_LOG10_2 = 3.0102999566398120   # 10 * log10(2): 10 log10(x) = TEN_LOG10_2 * log2(x)


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


def frame_waves(waves: torch.Tensor, window: torch.Tensor, n_frames: int, hop_length: int,
                preemphasis: float) -> torch.Tensor:
    """Pre-emphasised, centre-zero-padded, windowed frames.

    waves: (B, L) float32 contiguous; window: (n_fft,) float32 (win_length window zero-padded, centred);
    n_frames: T, the centred frame count (dsp.n_frames). Returns (B * T, n_fft) float32.
    """
    B, L = waves.shape
    n_fft = window.shape[0]
    T = n_frames
    out = torch.empty((B * T, n_fft), dtype=waves.dtype, device=waves.device)
    block = min(triton.next_power_of_2(n_fft), 1024)
    grid = (B * T, triton.cdiv(n_fft, block))
    _frame_kernel[grid](waves, window, out, L, T, float(preemphasis), 1.0 if preemphasis else 0.0,
                        N_FFT=n_fft, HOP=hop_length, BLOCK=block)
    return out


@triton.jit
def _mel_db_kernel(spec_ptr, mel_ptr, groups_ptr, db_ptr, tile_max_ptr, T, F, N_MELS, N_TILES, amin, ref_db,
                   N_GROUPS: tl.constexpr, BT: tl.constexpr, BF: tl.constexpr, BG: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // N_TILES
    t = (pid % N_TILES) * BT + tl.arange(0, BT)
    tmask = t < T
    rows = b.to(tl.int64) * T + t                       # (BT,) row of the (B*T, F) spectrum
    pair = tl.arange(0, 2)
    peak = tl.full((), float("-inf"), tl.float32)
    for g in range(N_GROUPS):
        f_lo = tl.load(groups_ptr + 2 * g)              # non-zero bins of this group's bands: [f_lo, f_hi)
        f_hi = tl.load(groups_ptr + 2 * g + 1)
        m = g * BG + tl.arange(0, BG)
        mmask = m < N_MELS
        acc = tl.zeros((BT, BG), dtype=tl.float32)
        for f0 in range(f_lo, f_hi, BF):
            f = f0 + tl.arange(0, BF)
            fmask = f < f_hi
            # (re, im) pairs as the innermost axis: 8-byte loads, power summed inside each thread
            offs = rows[:, None, None] * (2 * F) + (2 * f)[None, :, None] + pair[None, None, :]
            xy = tl.load(spec_ptr + offs, mask=(tmask[:, None] & fmask[None, :])[:, :, None], other=0.0)
            power = tl.sum(xy * xy, axis=2)                                  # (BT, BF)
            w = tl.load(mel_ptr + m[None, :] * F + f[:, None], mask=fmask[:, None] & mmask[None, :],
                        other=0.0)                                           # (BF, BG)
            acc += tl.dot(power, w, input_precision="ieee")
        db = 3.0102999566398120 * tl.log2(tl.maximum(acc, amin)) - ref_db
        valid = tmask[:, None] & mmask[None, :]
        tl.store(db_ptr + rows[:, None] * N_MELS + m[None, :], db, mask=valid)
        peak = tl.maximum(peak, tl.max(tl.max(tl.where(valid, db, float("-inf")), axis=1), axis=0))
    tl.store(tile_max_ptr + pid, peak)


@triton.jit
def _dct_delta_kernel(db_ptr, tile_max_ptr, dct_ptr, start_ptr, coef_ptr, out_ptr, T, N_MELS, N_MFCC, N_TILES,
                      N_MEL_TILES, top_db,
                      WIDTH: tl.constexpr, USE_TOP_DB: tl.constexpr, BT: tl.constexpr, BM: tl.constexpr,
                      BC: tl.constexpr, BR: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // N_TILES
    t = (pid % N_TILES) * BT + tl.arange(0, BT)
    tmask = t < T
    clip = b.to(tl.int64) * T                           # first row of this clip in the (B*T, n_mels) scratch
    if USE_TOP_DB:
        peak = tl.full((), float("-inf"), tl.float32)
        for i0 in range(0, N_MEL_TILES, BR):
            i = i0 + tl.arange(0, BR)
            v = tl.load(tile_max_ptr + b.to(tl.int64) * N_MEL_TILES + i, mask=i < N_MEL_TILES,
                        other=float("-inf"))
            peak = tl.maximum(peak, tl.max(v, axis=0))
        floor = peak - top_db
    else:
        floor = float("-inf")
    # Savitzky-Golay window of each output frame (dsp.delta_bands): frames min(start[t] + k, T-1), k < WIDTH,
    # weighted by coef[order, k, t] (the rows past the last frame of a clip shorter than WIDTH weigh 0)
    start = tl.load(start_ptr + t, mask=tmask, other=0)
    c = tl.arange(0, BC)
    cmask = c < N_MFCC
    mfcc = tl.zeros((BT, BC), dtype=tl.float32)
    d1 = tl.zeros((BT, BC), dtype=tl.float32)
    d2 = tl.zeros((BT, BC), dtype=tl.float32)
    for m0 in range(0, N_MELS, BM):
        m = m0 + tl.arange(0, BM)
        mmask = m < N_MELS
        lmask = tmask[:, None] & mmask[None, :]
        centre = tl.load(db_ptr + (clip + t)[:, None] * N_MELS + m[None, :], mask=lmask, other=0.0)
        centre = tl.maximum(centre, floor)
        acc1 = tl.zeros((BT, BM), dtype=tl.float32)
        acc2 = tl.zeros((BT, BM), dtype=tl.float32)
        for k in tl.static_range(WIDTH):
            r = tl.minimum(start + k, T - 1)
            v = tl.load(db_ptr + (clip + r)[:, None] * N_MELS + m[None, :], mask=lmask, other=0.0)
            v = tl.maximum(v, floor)
            w1 = tl.load(coef_ptr + k * T + t, mask=tmask, other=0.0)
            w2 = tl.load(coef_ptr + (WIDTH + k) * T + t, mask=tmask, other=0.0)
            acc1 += w1[:, None] * v
            acc2 += w2[:, None] * v
        dct = tl.load(dct_ptr + c[None, :] * N_MELS + m[:, None], mask=mmask[:, None] & cmask[None, :],
                      other=0.0)                                             # (BM, BC) = dct.T block
        mfcc += tl.dot(centre, dct, input_precision="ieee")
        d1 += tl.dot(acc1, dct, input_precision="ieee")
        d2 += tl.dot(acc2, dct, input_precision="ieee")
    out = out_ptr + b.to(tl.int64) * 3 * N_MFCC * T + c[None, :] * T + t[:, None]
    omask = tmask[:, None] & cmask[None, :]
    tl.store(out, mfcc, mask=omask)
    tl.store(out + N_MFCC * T, d1, mask=omask)
    tl.store(out + 2 * N_MFCC * T, d2, mask=omask)


def mfcc_from_spectrum(spec: torch.Tensor, mel: torch.Tensor, groups: torch.Tensor, dct: torch.Tensor,
                       delta_start: torch.Tensor, delta_coef: torch.Tensor, amin: float, ref_db: float,
                       top_db: float | None) -> torch.Tensor:
    """FD-MFCC from the complex STFT.

    spec: (B, T, F) complex64 contiguous (rfft of the frames); mel: (n_mels, F) float32 filterbank;
    groups: (ceil(n_mels / 16), 2) int32, the non-zero bin range [lo, hi) of each group of 16 bands;
    dct: (n_mfcc, n_mels) float32 ortho DCT-II rows; delta_start (T,) int32 and delta_coef (2, W, T)
    float32: the Savitzky-Golay table of dsp.delta_bands; ref_db: dsp.db_reference(amin, ref).
    Returns (B, 3, n_mfcc, T) float32: MFCC, delta, delta-delta; ``top_db`` is applied per clip.
    """
    B, T, F = spec.shape
    n_mels = mel.shape[0]
    n_mfcc = dct.shape[0]
    width = delta_coef.shape[1]
    device = spec.device
    mel_tiles = triton.cdiv(T, MEL_TILE)
    db = torch.empty((B, T, n_mels), dtype=torch.float32, device=device)
    tile_max = torch.empty((B, mel_tiles), dtype=torch.float32, device=device)
    _mel_db_kernel[(B * mel_tiles,)](torch.view_as_real(spec), mel, groups, db, tile_max, T, F, n_mels, mel_tiles,
                                     float(amin), float(ref_db), N_GROUPS=groups.shape[0], BT=MEL_TILE,
                                     BF=FREQ_BLOCK, BG=MEL_GROUP, num_warps=4)
    out = torch.empty((B, 3, n_mfcc, T), dtype=torch.float32, device=device)
    out_tiles = triton.cdiv(T, OUT_TILE)
    _dct_delta_kernel[(B * out_tiles,)](db, tile_max, dct, delta_start, delta_coef, out, T, n_mels, n_mfcc, out_tiles,
                                        mel_tiles, float(top_db or 0.0), WIDTH=width, USE_TOP_DB=top_db is not None,
                                        BT=OUT_TILE, BM=MEL_BLOCK, BC=max(16, triton.next_power_of_2(n_mfcc)),
                                        BR=min(1024, max(16, triton.next_power_of_2(mel_tiles))), num_warps=4)
    return out
