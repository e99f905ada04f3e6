"""GPU backends ``triton`` and ``cuda`` for the ops ``fd_mfcc`` and ``griffin_lim``.

Importing this module needs neither triton nor a CUDA build: kernels are imported on first use and
availability is probed lazily. Each backend's work runs inside one ``torch.library.custom_op``
(``ddfad_gpu::fd_mfcc`` / ``ddfad_gpu::griffin_lim``, with fake implementations), so compiled callers
keep one graph. The CUDA backend calls operators of ``ddfad_fast._C`` (csrc/cuda):

* fd_mfcc: ``ddfad::fd_mfcc_fused`` for power-of-two n_fft (one pass frames, transforms in shared
  memory, takes power, mel and dB of a tile of frames, a second the DCT and deltas: the frames and the
  spectrum never reach device memory); otherwise ``ddfad::frame_waves`` -> ``torch.fft.rfft`` (cuFFT)
  -> ``ddfad::mfcc_post``.
* griffin_lim: ``ddfad::gla_fused_step`` (one kernel per iteration: inverse FFT, overlap-add, forward
  FFT and the momentum step of a tile of frames, with its own shared-memory FFT; ~36 bytes a bin) for
  power-of-two n_fft; otherwise, and for the final inverse STFT, ``torch.fft`` with ``ddfad::gla_step``
  / ``ddfad::overlap_add_out``.

The Triton backend (kernels/fd_mfcc.py, kernels/griffin_lim.py): framing -> rfft -> two tiled post-FFT
passes; Griffin-Lim on pairs of real frames packed into complex C2C transforms (~76 bytes a bin).
Inverse FFTs run unscaled (norm="forward", the 1/n_fft folded into the envelope) and no torch.fft
out= variant is used: both would add a full pass over the data. The frame count and every constant
come from :mod:`ddfad_fast.ops.tables` (float64, cached per device by ``tables.as_tensor``); call a backend once
before capturing it in a CUDA graph so that they exist. No TF32 anywhere: every product is an fp32 FMA.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from . import _ext, dispatch, tables
from ..config import FeatureConfig
from ..errors import ParameterError

MEL_GROUP = 16                 # mel bands per group of the Triton mel pass (kernels/fd_mfcc.py MEL_GROUP)
FUSED_GLA_MAX_SMEM = 200 * 1024   # bytes of shared memory the fused CUDA iteration may use per block
_CUDA_FD_MFCC_OPS = ("fd_mfcc_fused", "frame_waves", "mfcc_post")
_CUDA_GLA_OPS = ("gla_step", "overlap_add", "overlap_add_out", "gla_fused_step")


# ----------------------------------------------------------------------------------------------
# availability
# ----------------------------------------------------------------------------------------------
def _triton_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _on_device(tensor: torch.Tensor, backend: str) -> bool:
    """CUDA tensors; CPU tensors too for Triton under TRITON_INTERPRET=1 (the tests without a GPU)."""
    return tensor.is_cuda or (backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1")


def _jit_build() -> None:
    """Build the CUDA operators with torch.utils.cpp_extension.load (only with DDFAD_CUDA_JIT=1).

    For development and the GPU suite when ``ddfad_fast._C`` cannot be imported at all (so the two never
    define the same schema): csrc/cuda plus csrc/cpu/ops.cpp, which holds the shared schemas.
    """
    from torch.utils.cpp_extension import load

    root = Path(__file__).resolve().parents[2] / "csrc"
    sources = sorted(str(p) for p in (root / "cuda").glob("*.cu")) + sorted(str(p) for p in (root / "cuda").glob("*.cpp"))
    if (root / "cpu" / "ops.cpp").exists():
        sources.append(str(root / "cpu" / "ops.cpp"))
    load(name="ddfad_cuda_jit", sources=sources, extra_include_paths=[str(root), str(root / "cuda")],
         extra_cflags=["-O3", "-std=c++17", "-DWITH_CUDA"],
         extra_cuda_cflags=["-O3", "-std=c++17", "-gencode=arch=compute_90,code=sm_90"],
         is_python_module=False, verbose=os.environ.get("DDFAD_CUDA_JIT_VERBOSE", "0") == "1")


_cuda_load_error: Optional[str] = None


@functools.lru_cache(maxsize=1)
def _cuda_ops_loaded() -> bool:
    global _cuda_load_error
    if not torch.cuda.is_available():
        return False
    error = _ext.load_error()
    if error is not None:
        _cuda_load_error = f"ddfad_fast._C did not load ({error})"
        if os.environ.get("DDFAD_CUDA_JIT", "0") != "1":
            return False
        try:
            _jit_build()
        except Exception as exc:  # a failed build means "no cuda backend", once, not an error at every probe
            _cuda_load_error = f"DDFAD_CUDA_JIT=1: building csrc/cuda failed: {exc}"
            warnings.warn(_cuda_load_error, RuntimeWarning)
            return False
    _cuda_load_error = None
    return True


def _cuda_available(ops: Tuple[str, ...]) -> bool:
    return _cuda_ops_loaded() and all(_ext.has_cuda_kernel(op) for op in ops)


def _cuda_unavailable_reason(ops: Tuple[str, ...]) -> str:
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    if not _cuda_ops_loaded():
        return _cuda_load_error or "ddfad_fast._C did not load"
    missing = [op for op in ops if not _ext.has_cuda_kernel(op)]
    return (f"ddfad_fast._C has no CUDA kernel for {', '.join('ddfad::' + op for op in missing)} "
            "(built without its CUDA sources: DDFAD_NO_CUDA=1, or no nvcc at build time)")


def _triton_unavailable_reason() -> str:
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    return "triton is not installed (pip install triton)"


# ----------------------------------------------------------------------------------------------
# constants (numpy, cached so that tables.as_tensor caches their device copies)
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def fft_twiddles(n_fft: int) -> np.ndarray:
    """(n_fft // 2, 2) float64: (cos, sin) of -2 pi k / n_fft, the twiddle table of the fused CUDA FFT."""
    k = np.arange(n_fft // 2)
    angle = -2.0 * np.pi * k / n_fft
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


@dataclass(frozen=True)
class FeatureTensors:
    """Device constants of one FeatureConfig and clip length (float32 unless said), from tables.feature_tables."""

    n_frames: int               # T
    ref_db: float               # tables.db_reference(amin, ref)
    window: torch.Tensor        # (n_fft,)
    mel: torch.Tensor           # (n_mels, F)
    groups: torch.Tensor        # (ceil(n_mels / MEL_GROUP), 2) int32
    bands: torch.Tensor         # (n_mels, 2) int32 [lo, hi)
    dct: torch.Tensor           # (n_mfcc, n_mels)
    delta_start: torch.Tensor   # (T,) int32
    delta_coef: torch.Tensor    # (2, W, T)


def feature_tensors(cfg: FeatureConfig, length: int, device: torch.device) -> FeatureTensors:
    """The constants the GPU fd_mfcc backends need for clips of ``length`` samples, on ``device`` (cached)."""
    tab = tables.feature_tables(cfg, length)
    groups = tables.mel_groups(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.fmin), cfg.f_max, MEL_GROUP)
    f32, i32 = torch.float32, torch.int32
    return FeatureTensors(
        n_frames=tab.n_frames, ref_db=tab.ref_db,
        window=tables.as_tensor(tab.window, f32, device),
        mel=tables.as_tensor(tab.mel, f32, device),
        groups=tables.as_tensor(groups, i32, device),
        bands=tables.as_tensor(tab.mel_bands, i32, device),
        dct=tables.as_tensor(tab.dct, f32, device),
        delta_start=tables.as_tensor(tab.delta_start, i32, device),
        delta_coef=tables.as_tensor(tab.delta_coef, f32, device),
    )


@functools.lru_cache(maxsize=64)
def scaled_inverse_envelope(window: str, win_length: int, n_fft: int, hop_length: int, n_frames: int) -> np.ndarray:
    """tables.inverse_envelope / n_fft: the overlap-add normalisation of frames from an unscaled inverse FFT.

    The loops call the inverse FFTs with norm="forward" (no scaling): torch applies the default 1/n_fft
    as one more pass over the frames, which this folds into the envelope for free.
    """
    return tables.inverse_envelope(window, win_length, n_fft, hop_length, n_frames) / n_fft


def gla_tensors(n_fft: int, hop_length: int, win_length: int, window: str, n_frames: int,
                dtype: torch.dtype, device: torch.device, unscaled: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(window (n_fft,), inverse envelope (n_fft + hop*(T-1),)) in ``dtype`` on ``device`` (cached).

    unscaled=True: the envelope divided by n_fft too, for frames of an inverse FFT with norm="forward".
    """
    env = (scaled_inverse_envelope if unscaled else tables.inverse_envelope)(window, win_length, n_fft, hop_length,
                                                                          n_frames)
    return tables.as_tensor(tables.window(window, win_length, n_fft), dtype, device), tables.as_tensor(env, dtype, device)


# ----------------------------------------------------------------------------------------------
# fd_mfcc
# ----------------------------------------------------------------------------------------------
_FEATURE_FIELDS = ("sample_rate", "preemphasis", "n_fft", "win_length", "hop_length", "window", "n_mels", "fmin",
                   "fmax", "top_db", "amin", "ref", "n_mfcc", "delta_width")


def fused_stft_supported(n_fft: int) -> bool:
    """Whether ``ddfad::fd_mfcc_fused`` handles n_fft: a power of two in [4, 8192]."""
    return 4 <= n_fft <= 8192 and n_fft & (n_fft - 1) == 0


def _fd_mfcc_impl(waves: torch.Tensor, cfg: FeatureConfig, backend: str) -> torch.Tensor:
    B, L = waves.shape
    c = feature_tensors(cfg, L, waves.device)
    T = c.n_frames
    top_db = None if cfg.top_db is None else float(cfg.top_db)
    if backend == "triton":
        from ddfad_fast.kernels.fd_mfcc import frame_waves, mfcc_from_spectrum

        frames = frame_waves(waves, c.window, T, cfg.hop_length, cfg.preemphasis)
        spec = torch.fft.rfft(frames).view(B, T, cfg.n_freqs)
        return mfcc_from_spectrum(spec, c.mel, c.groups, c.dct, c.delta_start, c.delta_coef, cfg.amin, c.ref_db,
                                  top_db)
    if fused_stft_supported(cfg.n_fft):
        twiddle = tables.as_tensor(fft_twiddles(cfg.n_fft), torch.float32, waves.device)
        return torch.ops.ddfad.fd_mfcc_fused(waves, c.window, twiddle, c.mel, c.bands, c.dct, c.delta_start,
                                             c.delta_coef, T, cfg.hop_length, float(cfg.preemphasis),
                                             float(cfg.amin), c.ref_db, top_db, 0, 0)
    frames = torch.ops.ddfad.frame_waves(waves, c.window, T, cfg.hop_length, float(cfg.preemphasis))
    spec = torch.fft.rfft(frames).view(B, T, cfg.n_freqs)
    return torch.ops.ddfad.mfcc_post(spec, c.mel, c.bands, c.dct, c.delta_start, c.delta_coef, float(cfg.amin),
                                     c.ref_db, top_db)


@torch.library.custom_op("ddfad_gpu::fd_mfcc", mutates_args=())
def _fd_mfcc_op(waves: torch.Tensor, sample_rate: int, preemphasis: float, n_fft: int, win_length: int,
                hop_length: int, window: str, n_mels: int, fmin: float, fmax: Optional[float],
                top_db: Optional[float], amin: float, ref: float, n_mfcc: int, delta_width: int,
                backend: str) -> torch.Tensor:
    cfg = FeatureConfig(sample_rate=sample_rate, fixed_length=None, preemphasis=preemphasis, n_fft=n_fft,
                        win_length=win_length, hop_length=hop_length, window=window, n_mels=n_mels, fmin=fmin,
                        fmax=fmax, top_db=top_db, amin=amin, ref=ref, n_mfcc=n_mfcc, delta_width=delta_width)
    return _fd_mfcc_impl(waves, cfg, backend)


@_fd_mfcc_op.register_fake
def _(waves, sample_rate, preemphasis, n_fft, win_length, hop_length, window, n_mels, fmin, fmax, top_db, amin,
      ref, n_mfcc, delta_width, backend):
    return waves.new_empty((waves.shape[0], 3, n_mfcc, tables.n_frames(waves.shape[1], n_fft, hop_length)))


def _fd_mfcc(backend: str, waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    if waves.dim() != 2 or waves.dtype != torch.float32 or not _on_device(waves, backend):
        raise ParameterError(f"{backend} fd_mfcc needs (B, L) float32 CUDA waves, got {tuple(waves.shape)} "
                             f"{waves.dtype} on {waves.device}")
    # like the reference, the STFT is centred with zero padding (config.center / pad_mode are not consulted)
    return _fd_mfcc_op(waves.contiguous(), *(getattr(config, name) for name in _FEATURE_FIELDS), backend)


@dispatch.recorded("fd_mfcc", "triton")
def fd_mfcc_triton(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """FD-MFCC with Triton kernels. waves: (B, L) float32 CUDA -> (B, 3, n_mfcc, config.n_frames(L)) float32."""
    return _fd_mfcc("triton", waves, config)


@dispatch.recorded("fd_mfcc", "cuda")
def fd_mfcc_cuda(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """FD-MFCC with the CUDA kernels of ddfad_fast._C; same contract as :func:`fd_mfcc_triton`."""
    return _fd_mfcc("cuda", waves, config)


@dispatch.recorded("mfcc", "triton")
def mfcc_triton(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """MFCCs with the Triton FD-MFCC kernels (its first channel; the deltas cost a few percent of the call).
    waves: (B, L) float32 CUDA -> (B, n_mfcc, config.n_frames(L)) float32."""
    return _fd_mfcc("triton", waves, config)[:, 0].contiguous()


@dispatch.recorded("mfcc", "cuda")
def mfcc_cuda(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """MFCCs with the CUDA FD-MFCC kernels; same contract as :func:`mfcc_triton`."""
    return _fd_mfcc("cuda", waves, config)[:, 0].contiguous()


# ----------------------------------------------------------------------------------------------
# griffin_lim
# ----------------------------------------------------------------------------------------------
def fused_gla_smem_bytes(n_fft: int, hop_length: int, tile_frames: int, itemsize: int) -> int:
    """Shared memory of one block of ``ddfad::gla_fused_step`` (must match csrc/cuda/griffin_lim_kernels.cu)."""
    halo = (n_fft - 1) // hop_length
    in_frames = tile_frames + 2 * halo
    segment = (tile_frames - 1) * hop_length + n_fft
    return itemsize * (n_fft + in_frames * n_fft + segment)       # twiddles, frame buffers, signal segment


def fused_gla_supported(n_fft: int, hop_length: int, dtype: torch.dtype) -> bool:
    """Whether ``ddfad::gla_fused_step`` handles this size: power-of-two n_fft in [4, 8192] and a one-frame tile fits."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return (4 <= n_fft <= 8192 and n_fft & (n_fft - 1) == 0
            and fused_gla_smem_bytes(n_fft, hop_length, 1, itemsize) <= FUSED_GLA_MAX_SMEM)


def _initial_state(magnitude: torch.Tensor, init_phase: torch.Tensor, n_fft: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(magnitude (B, T, F), x = init_phase * magnitude (B, T, F) complex with real DC / Nyquist bins)."""
    mag = magnitude.transpose(1, 2).contiguous()
    x = (init_phase.to(mag.dtype.to_complex()).transpose(1, 2) * mag).contiguous()
    real = torch.view_as_real(x)
    real[:, :, 0, 1] = 0          # an inverse real FFT reads only the real part of these bins
    if n_fft % 2 == 0:
        real[:, :, -1, 1] = 0
    return mag, x


def _gla_cufft(step: Callable, ola: Callable, mag: torch.Tensor, x: torch.Tensor, win: torch.Tensor,
               inv_env: torch.Tensor, n_fft: int, hop_length: int, n_iter: int, length: int) -> torch.Tensor:
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


def _gla_triton(mag: torch.Tensor, x: torch.Tensor, win: torch.Tensor, inv_env: torch.Tensor, params: torch.Tensor,
                n_fft: int, hop_length: int, n_iter: int, length: int) -> torch.Tensor:
    """The Triton loop on paired frames (kernels/griffin_lim.py): C2C transforms, 76 bytes a bin an iteration."""
    from ddfad_fast.kernels.griffin_lim import gla_step_pairs, overlap_add_pairs, pack_pairs

    B, T, F = mag.shape
    rows = mag.view(B * T, F)
    z_spec = pack_pairs(x.view(B * T, F), n_fft)          # (P, n_fft): two frames' spectra per row
    reframed = torch.zeros_like(z_spec)                   # a missing last frame of an odd B*T stays zero
    w_prev = torch.zeros_like(z_spec)
    for _ in range(n_iter):
        overlap_add_pairs(torch.fft.ifft(z_spec, norm="forward"), win, inv_env, B, T, hop_length, length, reframed,
                          reframe=True)
        w = torch.fft.fft(reframed)
        gla_step_pairs(z_spec, w, w_prev, rows, params)
        w_prev = w
    out = torch.empty((B, length), dtype=mag.dtype, device=mag.device)
    return overlap_add_pairs(torch.fft.ifft(z_spec, norm="forward"), win, inv_env, B, T, hop_length, length, out,
                             reframe=False)


def _griffin_lim_impl(magnitude: torch.Tensor, init_phase: torch.Tensor, n_fft: int, hop_length: int,
                      win_length: int, window: str, n_iter: int, momentum: float, length: int,
                      backend: str, tile_frames: int, max_radix: int) -> torch.Tensor:
    B, F, T = magnitude.shape
    win, inv_env = gla_tensors(n_fft, hop_length, win_length, window, T, magnitude.dtype, magnitude.device,
                               unscaled=True)
    mag, x = _initial_state(magnitude, init_phase, n_fft)
    if backend == "triton":
        params = torch.empty(2, dtype=mag.dtype, device=mag.device)   # filled by kernels: capturable
        params[0].fill_(momentum / (1.0 + momentum))
        params[1].fill_(torch.finfo(mag.dtype).tiny)
        return _gla_triton(mag, x, win, inv_env, params, n_fft, hop_length, n_iter, length)
    ops = torch.ops.ddfad
    ola = lambda f, w, e, h, n, r, o: ops.overlap_add_out(f, w, e, h, n, r, o)  # noqa: E731
    if tile_frames < 0 or not fused_gla_supported(n_fft, hop_length, mag.dtype):
        def step(x_, c_, p_, m_):
            ops.gla_step(x_, c_, p_, m_, momentum)
            if n_fft % 2 == 0:      # the op stores the DC bin real; the Nyquist bin needs n_fft's parity
                torch.view_as_real(x_)[:, :, -1, 1].zero_()
        return _gla_cufft(step, ola, mag, x, win, inv_env, n_fft, hop_length, n_iter, length)
    twiddle = tables.as_tensor(fft_twiddles(n_fft), mag.dtype, mag.device)
    win_plain, inv_env_plain = gla_tensors(n_fft, hop_length, win_length, window, T, mag.dtype, mag.device)
    x_next = torch.empty_like(x)
    prev = torch.zeros_like(x)
    for _ in range(n_iter):
        ops.gla_fused_step(x, x_next, prev, mag, win_plain, inv_env_plain, twiddle, n_fft, hop_length, length,
                           momentum, tile_frames, max_radix)
        x, x_next = x_next, x
    out = torch.empty((B, length), dtype=mag.dtype, device=mag.device)
    ola(torch.fft.irfft(x, n=n_fft, norm="forward"), win, inv_env, hop_length, length, False, out)
    return out


@torch.library.custom_op("ddfad_gpu::griffin_lim", mutates_args=())
def _griffin_lim_op(magnitude: torch.Tensor, init_phase: torch.Tensor, n_fft: int, hop_length: int,
                    win_length: int, window: str, n_iter: int, momentum: float, length: int,
                    backend: str, tile_frames: int, max_radix: int) -> torch.Tensor:
    return _griffin_lim_impl(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum,
                             length, backend, tile_frames, max_radix)


@_griffin_lim_op.register_fake
def _(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length, backend, tile_frames,
      max_radix):
    return magnitude.new_empty((magnitude.shape[0], length))


def _griffin_lim(backend: str, magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
                 window: str, n_iter: int, momentum: float, init_phase: torch.Tensor, length: int,
                 tile_frames: int = 0, max_radix: int = 0) -> torch.Tensor:
    if (magnitude.dim() != 3 or magnitude.dtype not in (torch.float32, torch.float64)
            or not _on_device(magnitude, backend)):
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
    return _griffin_lim_op(magnitude.contiguous(), init_phase.to(magnitude.device), n_fft, hop_length, win_length,
                           window, int(n_iter), float(momentum), int(length), backend, int(tile_frames),
                           int(max_radix))


@dispatch.recorded("griffin_lim", "triton")
def griffin_lim_triton(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                       n_iter: int, momentum: float, init_phase: torch.Tensor, length: int) -> torch.Tensor:
    """Fast Griffin-Lim with Triton kernels and cuFFT.

    magnitude: (B, n_fft//2 + 1, T) float32/float64 CUDA; init_phase: (B, F, T) complex unit phasors;
    length: output samples (tables.n_frames(length, n_fft, hop_length) must equal T). Returns (B, length), magnitude's
    dtype.
    """
    return _griffin_lim("triton", magnitude, n_fft, hop_length, win_length, window, n_iter, momentum,
                        init_phase, length)


@dispatch.recorded("griffin_lim", "cuda")
def griffin_lim_cuda(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                     n_iter: int, momentum: float, init_phase: torch.Tensor, length: int,
                     tile_frames: int = 0, max_radix: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim with the CUDA kernels of ddfad_fast._C; same contract as :func:`griffin_lim_triton`.

    Power-of-two n_fft runs one fused kernel per iteration: ``tile_frames`` output frames per block
    (0 = chosen by the op), FFT passes of at most ``max_radix`` points (0 = 4). Other sizes, and
    ``tile_frames < 0`` (for benchmarks), use cuFFT with the CUDA step and overlap-add kernels.
    """
    return _griffin_lim("cuda", magnitude, n_fft, hop_length, win_length, window, n_iter, momentum,
                        init_phase, length, tile_frames, max_radix)


# Preferred GPU backend per op, from bench/gpu_bench.py on an H100 (2026-11-25, bench/results/gpu_suite/):
# fd_mfcc cuda 0.14-0.84 ms vs triton 0.39-2.16 ms (2.6-3.4x) at B = 64 / 1024; griffin_lim (32 iterations)
# cuda 1.2-4x faster at B = 64 and within 15 % of triton at B = 1024.
for _op, _triton, _cuda in (("fd_mfcc", fd_mfcc_triton, fd_mfcc_cuda), ("mfcc", mfcc_triton, mfcc_cuda)):
    dispatch.set_preference(_op, "cuda", ("cuda", "triton"))
    dispatch.register(_op, "triton", _triton, devices=("cuda",), available=_triton_available,
                      dtypes=(torch.float32,), why_unavailable=_triton_unavailable_reason)
    dispatch.register(_op, "cuda", _cuda, devices=("cuda",),
                      available=lambda: _cuda_available(_CUDA_FD_MFCC_OPS), dtypes=(torch.float32,),
                      why_unavailable=lambda: _cuda_unavailable_reason(_CUDA_FD_MFCC_OPS))
dispatch.set_preference("griffin_lim", "cuda", ("cuda", "triton"))
dispatch.register("griffin_lim", "triton", griffin_lim_triton, devices=("cuda",), available=_triton_available,
                  why_unavailable=_triton_unavailable_reason)
dispatch.register("griffin_lim", "cuda", griffin_lim_cuda, devices=("cuda",),
                  available=lambda: _cuda_available(_CUDA_GLA_OPS),
                  why_unavailable=lambda: _cuda_unavailable_reason(_CUDA_GLA_OPS))
