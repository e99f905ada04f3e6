"""Fast Griffin-Lim on the GPU: the ``cuda`` and ``triton`` implementations.

* ``cuda``: the operator ``ddfad::griffin_lim`` of ``ddfad_fast._C`` (the schema the ``cpu`` backend calls;
  on CUDA tensors csrc/cuda runs the loop: one fused kernel per iteration for power-of-two n_fft, inverse
  FFT, overlap-add, forward FFT and the momentum step of a tile of frames in shared memory, ~36 bytes a bin;
  cuFFT with the step and overlap-add kernels for other sizes). Benchmarks may pick the fused kernel's frames
  per block and FFT radix, or the cuFFT path (``tile_frames < 0``): those run the loop here around
  ``ddfad::gla_fused_step`` / ``ddfad::gla_step``.
* ``triton``: kernels/griffin_lim.py on pairs of real frames packed into complex C2C transforms (~76 bytes a
  bin).
Both run inside the custom operator ``ddfad::griffin_lim_gpu`` (with a fake implementation), so compiled
callers keep one graph; a call's Python cost is small beside its iterations.

Inverse FFTs run unscaled (norm="forward", the 1/n_fft folded into the envelope) and no torch.fft out=
variant is used: both would add a full pass over the data. Nothing synchronises with the host, so a call
can be captured in a CUDA graph (call it once first, so the tables exist on the device).
"""
from __future__ import annotations

import functools
from typing import Callable, Tuple

import numpy as np
import torch
from torch import Tensor

from . import _ext, tables
from ..errors import ParameterError

FUSED_GLA_MAX_SMEM = 200 * 1024   # bytes of shared memory the fused CUDA iteration may use per block


@functools.lru_cache(maxsize=64)
def scaled_inverse_envelope(window: str, win_length: int, n_fft: int, hop_length: int, n_frames: int) -> np.ndarray:
    """tables.inverse_envelope / n_fft: the overlap-add normalisation of frames from an unscaled inverse FFT."""
    return tables.inverse_envelope(window, win_length, n_fft, hop_length, n_frames) / n_fft


def gla_tensors(n_fft: int, hop_length: int, win_length: int, window: str, n_frames: int,
                dtype: torch.dtype, device: torch.device, unscaled: bool = False) -> Tuple[Tensor, Tensor]:
    """(window (n_fft,), inverse envelope (n_fft + hop*(T-1),)) in ``dtype`` on ``device`` (cached).

    unscaled=True: the envelope divided by n_fft too, for frames of an inverse FFT with norm="forward".
    """
    env = (scaled_inverse_envelope if unscaled else tables.inverse_envelope)(window, win_length, n_fft, hop_length,
                                                                          n_frames)
    return tables.as_tensor(tables.window(window, win_length, n_fft), dtype, device), tables.as_tensor(env, dtype, device)


def fused_gla_smem_bytes(n_fft: int, hop_length: int, tile_frames: int, itemsize: int) -> int:
    """Shared memory of one block of ``ddfad::gla_fused_step`` (csrc/cuda/griffin_lim_math.h gla_fused_smem_scalars)."""
    halo = (n_fft - 1) // hop_length
    in_frames = tile_frames + 2 * halo
    segment = (tile_frames - 1) * hop_length + n_fft
    # twiddles, frame buffers, the signal segment, the window, the segment's envelope
    return itemsize * (n_fft + in_frames * n_fft + 2 * segment + n_fft)


def fused_gla_supported(n_fft: int, hop_length: int, dtype: torch.dtype) -> bool:
    """Whether ``ddfad::gla_fused_step`` handles this size: power-of-two n_fft in [4, 8192] and a one-frame tile fits."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return (4 <= n_fft <= 8192 and n_fft & (n_fft - 1) == 0
            and fused_gla_smem_bytes(n_fft, hop_length, 1, itemsize) <= FUSED_GLA_MAX_SMEM)


def initial_state(magnitude: Tensor, init_phase: Tensor, n_fft: int) -> Tuple[Tensor, Tensor]:
    """(magnitude (B, T, F), x = init_phase * magnitude (B, T, F) complex with real DC / Nyquist bins)."""
    mag = magnitude.transpose(1, 2).contiguous()
    x = (init_phase.to(mag.dtype.to_complex()).transpose(1, 2) * mag).contiguous()
    real = torch.view_as_real(x)
    real[:, :, 0, 1] = 0          # an inverse real FFT reads only the real part of these bins
    if n_fft % 2 == 0:
        real[:, :, -1, 1] = 0
    return mag, x


def _gla_cufft(step: Callable, ola: Callable, mag: Tensor, x: Tensor, win: Tensor, inv_env: Tensor, n_fft: int,
               hop_length: int, n_iter: int, length: int) -> Tensor:
    """The per-frame loop with cuFFT R2C / C2R transforms (inv_env: the unscaled-inverse envelope)."""
    B, T, _ = mag.shape
    reframed = torch.empty((B, T, n_fft), dtype=mag.dtype, device=mag.device)
    prev = torch.zeros_like(x)
    for _ in range(n_iter):
        ola(torch.fft.irfft(x, n=n_fft, norm="forward"), win, inv_env, hop_length, length, True, reframed)
        cur = torch.fft.rfft(reframed)
        step(x, cur, prev, mag)
        prev = cur
    out = torch.empty((B, length), dtype=mag.dtype, device=mag.device)
    ola(torch.fft.irfft(x, n=n_fft, norm="forward"), win, inv_env, hop_length, length, False, out)
    return out


def cuda_variant(magnitude: Tensor, init_phase: Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                 n_iter: int, momentum: float, length: int, tile_frames: int, max_radix: int) -> Tensor:
    """The CUDA loop at chosen frames per block and FFT radix of the fused kernel, or (tile_frames < 0, or a size
    the fused kernel does not take) the cuFFT path; for benchmarks and tests of those variants."""
    B, F, T = magnitude.shape
    ops = torch.ops.ddfad
    mag, x = initial_state(magnitude, init_phase, n_fft)
    win, inv_env = gla_tensors(n_fft, hop_length, win_length, window, T, mag.dtype, mag.device, unscaled=True)
    ola = lambda f, w, e, h, n, r, o: ops.overlap_add_out(f, w, e, h, n, r, o)  # noqa: E731
    if tile_frames < 0 or not fused_gla_supported(n_fft, hop_length, mag.dtype):
        def step(x_, c_, p_, m_):
            ops.gla_step(x_, c_, p_, m_, momentum)
            if n_fft % 2 == 0:      # the op stores the DC bin real; the Nyquist bin needs n_fft's parity
                torch.view_as_real(x_)[:, :, -1, 1].zero_()
        return _gla_cufft(step, ola, mag, x, win, inv_env, n_fft, hop_length, n_iter, length)
    win_plain, inv_env_plain = gla_tensors(n_fft, hop_length, win_length, window, T, mag.dtype, mag.device)
    x_next = torch.empty_like(x)
    prev = torch.zeros_like(x)
    for _ in range(n_iter):
        ops.gla_fused_step(x, x_next, prev, mag, win_plain, inv_env_plain, n_fft, hop_length, length, momentum,
                           tile_frames, max_radix)
        x, x_next = x_next, x
    out = torch.empty((B, length), dtype=mag.dtype, device=mag.device)
    ola(torch.fft.irfft(x, n=n_fft, norm="forward"), win, inv_env, hop_length, length, False, out)
    return out


def cuda_op(magnitude: Tensor, init_phase: Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
            n_iter: int, momentum: float, length: int) -> Tensor:
    """``ddfad::griffin_lim`` on CUDA tensors, the tables from tables (cached on the device)."""
    _ext.load_error()                     # the operators of ddfad_fast._C (torch.ops.ddfad.*) where it loads
    T = magnitude.shape[2]
    win, inv_env = gla_tensors(n_fft, hop_length, win_length, window, T, magnitude.dtype, magnitude.device)
    lo, hi = tables.window_support(window, win_length, n_fft)
    return torch.ops.ddfad.griffin_lim(magnitude, init_phase, win, lo, hi, inv_env, hop_length, n_iter,
                                       float(momentum), length, 0)


def triton_loop(magnitude: Tensor, init_phase: Tensor, window: Tensor, inv_envelope: Tensor, hop_length: int,
                n_iter: int, momentum: float, length: int) -> Tensor:
    """The Triton loop on paired frames (kernels/griffin_lim.py): C2C transforms, 76 bytes a bin an iteration.
    inv_envelope: the unscaled-inverse envelope (:func:`scaled_inverse_envelope`)."""
    from ddfad_fast.kernels.griffin_lim import gla_step_pairs, overlap_add_pairs, pack_pairs

    n_fft = window.shape[0]
    mag, x = initial_state(magnitude, init_phase, n_fft)
    B, T, F = mag.shape
    params = torch.empty(2, dtype=mag.dtype, device=mag.device)   # filled by kernels: capturable
    params[0].fill_(momentum / (1.0 + momentum))
    params[1].fill_(torch.finfo(mag.dtype).tiny)
    rows = mag.view(B * T, F)
    z_spec = pack_pairs(x.view(B * T, F), n_fft)          # (P, n_fft): two frames' spectra per row
    reframed = torch.zeros_like(z_spec)                   # a missing last frame of an odd B*T stays zero
    w_prev = torch.zeros_like(z_spec)
    for _ in range(n_iter):
        overlap_add_pairs(torch.fft.ifft(z_spec, norm="forward"), window, inv_envelope, B, T, hop_length, length,
                          reframed, reframe=True)
        w = torch.fft.fft(reframed)
        gla_step_pairs(z_spec, w, w_prev, rows, params)
        w_prev = w
    out = torch.empty((B, length), dtype=mag.dtype, device=mag.device)
    return overlap_add_pairs(torch.fft.ifft(z_spec, norm="forward"), window, inv_envelope, B, T, hop_length, length,
                             out, reframe=False)


def triton_op(magnitude: Tensor, init_phase: Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
              n_iter: int, momentum: float, length: int) -> Tensor:
    T = magnitude.shape[2]
    win, inv_env = gla_tensors(n_fft, hop_length, win_length, window, T, magnitude.dtype, magnitude.device,
                               unscaled=True)
    return triton_loop(magnitude, init_phase, win, inv_env, hop_length, n_iter, momentum, length)


@torch.library.custom_op("ddfad::griffin_lim_gpu", mutates_args=())
def griffin_lim_gpu_op(magnitude: Tensor, init_phase: Tensor, n_fft: int, hop_length: int, win_length: int,
                       window: str, n_iter: int, momentum: float, length: int, backend: str, tile_frames: int,
                       max_radix: int) -> Tensor:
    """The GPU Griffin-Lim of ``backend`` ("cuda": ddfad::griffin_lim, or a variant of its loop; "triton")."""
    if backend == "triton":
        return triton_op(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length)
    if tile_frames == 0 and max_radix == 0:
        return cuda_op(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length)
    return cuda_variant(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length,
                        tile_frames, max_radix)


@griffin_lim_gpu_op.register_fake
def _(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length, backend, tile_frames,
      max_radix):
    return magnitude.new_empty((magnitude.shape[0], length))


def check_args(backend: str, magnitude: Tensor, n_fft: int, hop_length: int, init_phase: Tensor, length: int,
               max_radix: int, on_device: Callable[[Tensor, str], bool]) -> None:
    if (magnitude.dim() != 3 or magnitude.dtype not in (torch.float32, torch.float64)
            or not on_device(magnitude, backend)):
        raise ParameterError(f"{backend} griffin_lim needs (B, F, T) float32/float64 CUDA magnitudes, got "
                             f"{tuple(magnitude.shape)} {magnitude.dtype} on {magnitude.device}")
    B, F, T = magnitude.shape
    if F != n_fft // 2 + 1:
        raise ParameterError(f"magnitude has {F} frequency bins, expected n_fft//2+1 = {n_fft // 2 + 1}")
    if length < 1 or tables.n_frames(length, n_fft, hop_length) != T:
        raise ParameterError(f"length={length} gives {tables.n_frames(max(length, 0), n_fft, hop_length)} frames, "
                             f"magnitude has {T}")
    if tuple(init_phase.shape) != (B, F, T):
        raise ParameterError(f"init_phase has shape {tuple(init_phase.shape)}, magnitude {(B, F, T)}")
    if max_radix not in (0, 2, 4, 8, 16):
        raise ParameterError(f"max_radix must be 0 (default), 2, 4, 8 or 16, got {max_radix}")
