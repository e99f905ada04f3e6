"""GPU backends ``triton`` and ``cuda`` for the ops ``fd_mfcc`` and ``griffin_lim``.

Importing this module needs neither triton nor a CUDA build: kernels are imported on first use and
availability is probed lazily. Each backend's work runs inside one ``torch.library.custom_op``
(``ddfad_gpu::*``, with a fake implementation), so compiled callers keep one graph. The CUDA backend
calls the ``ddfad::gla_step`` / ``ddfad::overlap_add`` operators of ``ddfad_fast._C`` (csrc/cuda).
Constants (window, envelope, mel, DCT, delta matrices) are computed here in float64 and cached per
device; call a backend once before capturing it in a CUDA graph. No TF32 anywhere.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from . import backends
from .config import FeatureConfig
from .errors import ParameterError

_CACHE: Dict[tuple, Tuple[torch.Tensor, ...]] = {}
MAX_TRITON_FRAMES = 512   # the fused post-FFT kernel keeps a whole clip's (T, n_mels) tile in one program


def _triton_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=1)
def _cuda_ext_loaded() -> bool:
    try:
        importlib.import_module("ddfad_fast._C")
        torch.ops.ddfad.gla_step  # noqa: B018  (raises AttributeError when built without CUDA sources)
        torch.ops.ddfad.overlap_add  # noqa: B018
    except (ImportError, AttributeError, RuntimeError):
        return False
    return True


def _cuda_available() -> bool:
    return torch.cuda.is_available() and _cuda_ext_loaded()


def window_vector(name: str, win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann / Hamming window of ``win_length`` zero-padded (centred) to ``n_fft``; float64."""
    n = np.arange(win_length)
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    elif name == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * n / win_length)
    else:
        raise ParameterError(f"window must be 'hann' or 'hamming', got {name!r}")
    out = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    out[start:start + win_length] = w
    return out


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    logstep = math.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-30) / 1000.0) / logstep, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    logstep = math.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), (200.0 / 3) * m)


def mel_matrix(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-scale, Slaney-normalised mel filterbank (n_mels, n_fft//2 + 1), float64."""
    fft_freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_freqs)
    mel_pts = np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(cfg.f_max), cfg.n_mels + 2)
    hz = _mel_to_hz(mel_pts)
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]


def dct_basis(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Ortho DCT-II as an (n_mels, n_mfcc) matrix: mfcc = log_mel @ basis; float64."""
    m = np.arange(n_mels)
    c = np.arange(n_mfcc)
    basis = np.cos(np.pi * c[None, :] * (2 * m[:, None] + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[:, 0] = math.sqrt(1.0 / n_mels)
    return basis


def delta_matrix(n_frames: int, width: int, order: int) -> np.ndarray:
    """(T, T) matrix D with delta = D @ x along time: librosa ``feature.delta(width, order, mode="interp")``.

    Each output frame is the ``order``-th derivative, at that frame, of the degree-``order`` least-squares
    polynomial through the ``width``-frame window centred on it (clamped inside the clip at the edges),
    which is Savitzky-Golay with interp edges. Clips shorter than ``width`` frames are edge-padded to
    ``width`` frames first and the result cropped back (the "edge" short-clip rule).
    """
    if n_frames < width:
        pad_left = (width - n_frames) // 2
        src = np.clip(np.arange(width) - pad_left, 0, n_frames - 1)
        expand = np.zeros((width, n_frames))
        expand[np.arange(width), src] = 1.0
        return delta_matrix(width, width, order)[pad_left:pad_left + n_frames] @ expand
    x = np.arange(width, dtype=np.float64)
    vander = x[:, None] ** np.arange(order + 1)[None, :]
    fit = np.linalg.pinv(vander)                                        # (order+1, width)
    out = np.zeros((n_frames, n_frames))
    half = width // 2
    for t in range(n_frames):
        start = min(max(t - half, 0), n_frames - width)
        x0 = t - start
        deriv = np.array([math.factorial(j) / math.factorial(j - order) * x0 ** (j - order) if j >= order else 0.0
                          for j in range(order + 1)])
        out[t, start:start + width] = deriv @ fit
    return out


def feature_constants(cfg: FeatureConfig, n_frames: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """(window (n_fft,), mel_t (F, n_mels), dct (n_mels, n_mfcc), d1 (T, T), d2 (T, T)) float32 on device."""
    key = ("feat", json.dumps(cfg.to_dict(), sort_keys=True), n_frames, str(device))
    if key not in _CACHE:
        arrays = (window_vector(cfg.window, cfg.win_length, cfg.n_fft), mel_matrix(cfg).T,
                  dct_basis(cfg.n_mels, cfg.n_mfcc), delta_matrix(n_frames, cfg.delta_width, 1),
                  delta_matrix(n_frames, cfg.delta_width, 2))
        _CACHE[key] = tuple(torch.tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device) for a in arrays)
    return _CACHE[key]


def gla_constants(n_fft: int, hop_length: int, win_length: int, window: str, n_frames: int,
                  dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(window (n_fft,), inverse envelope (n_fft + hop*(T-1),)) for the overlap-add, in ``dtype``."""
    key = ("gla", n_fft, hop_length, win_length, window, n_frames, dtype, str(device))
    if key not in _CACHE:
        w = window_vector(window, win_length, n_fft)
        env = np.zeros(n_fft + hop_length * (n_frames - 1))
        for t in range(n_frames):
            env[t * hop_length:t * hop_length + n_fft] += w * w
        tiny = np.finfo(np.float32 if dtype == torch.float32 else np.float64).tiny
        inv = np.where(env > tiny, 1.0 / np.where(env > tiny, env, 1.0), 1.0)
        _CACHE[key] = (torch.tensor(w, dtype=dtype, device=device), torch.tensor(inv, dtype=dtype, device=device))
    return _CACHE[key]


_FEATURE_FIELDS = ("sample_rate", "preemphasis", "n_fft", "win_length", "hop_length", "window", "n_mels", "fmin",
                   "fmax", "top_db", "amin", "ref", "n_mfcc", "delta_width")


def _fd_mfcc_impl(waves: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    from ddfad_fast.kernels.fd_mfcc import frame_waves, mfcc_from_spectrum

    B, L = waves.shape
    T = cfg.n_frames(L)
    window, mel_t, dct, d1, d2 = feature_constants(cfg, T, waves.device)
    frames = frame_waves(waves, window, cfg.hop_length, cfg.preemphasis)
    spec = torch.fft.rfft(frames).reshape(B, T, cfg.n_freqs)
    return mfcc_from_spectrum(spec, mel_t, dct, d1, d2, cfg.amin, cfg.ref, cfg.top_db)


def _gla_kernels(backend: str):
    if backend == "triton":
        from ddfad_fast.kernels.griffin_lim import gla_step, overlap_add
        return gla_step, overlap_add
    return torch.ops.ddfad.gla_step, torch.ops.ddfad.overlap_add


def _griffin_lim_impl(magnitude: torch.Tensor, init_phase: torch.Tensor, n_fft: int, hop_length: int,
                      win_length: int, window: str, n_iter: int, momentum: float, length: int,
                      backend: str) -> torch.Tensor:
    step, ola = _gla_kernels(backend)
    B, F, T = magnitude.shape
    win, inv_env = gla_constants(n_fft, hop_length, win_length, window, T, magnitude.dtype, magnitude.device)
    mag = magnitude.transpose(1, 2).contiguous()                       # (B, T, F)
    x = (init_phase.to(mag.dtype.to_complex()).transpose(1, 2) * mag).contiguous()
    prev = torch.zeros_like(x)
    cur = torch.empty_like(x)
    for _ in range(n_iter):
        frames = ola(torch.fft.irfft(x, n=n_fft), win, inv_env, hop_length, length, True)
        torch.fft.rfft(frames, out=cur)
        step(x, cur, prev, mag, momentum)
        prev, cur = cur, prev
    return ola(torch.fft.irfft(x, n=n_fft), win, inv_env, hop_length, length, False)


@torch.library.custom_op("ddfad_gpu::fd_mfcc_triton", mutates_args=())
def _fd_mfcc_triton_op(waves: torch.Tensor, sample_rate: int, preemphasis: float, n_fft: int, win_length: int,
                       hop_length: int, window: str, n_mels: int, fmin: float, fmax: Optional[float],
                       top_db: Optional[float], amin: float, ref: float, n_mfcc: int,
                       delta_width: int) -> torch.Tensor:
    cfg = FeatureConfig(sample_rate=sample_rate, fixed_length=None, preemphasis=preemphasis, n_fft=n_fft,
                        win_length=win_length, hop_length=hop_length, window=window, n_mels=n_mels, fmin=fmin,
                        fmax=fmax, top_db=top_db, amin=amin, ref=ref, n_mfcc=n_mfcc, delta_width=delta_width)
    return _fd_mfcc_impl(waves, cfg)


@_fd_mfcc_triton_op.register_fake
def _(waves, sample_rate, preemphasis, n_fft, win_length, hop_length, window, n_mels, fmin, fmax, top_db, amin,
      ref, n_mfcc, delta_width):
    return waves.new_empty((waves.shape[0], 3, n_mfcc, 1 + waves.shape[1] // hop_length))


@torch.library.custom_op("ddfad_gpu::griffin_lim", mutates_args=())
def _griffin_lim_op(magnitude: torch.Tensor, init_phase: torch.Tensor, n_fft: int, hop_length: int,
                    win_length: int, window: str, n_iter: int, momentum: float, length: int,
                    backend: str) -> torch.Tensor:
    return _griffin_lim_impl(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum,
                             length, backend)


@_griffin_lim_op.register_fake
def _(magnitude, init_phase, n_fft, hop_length, win_length, window, n_iter, momentum, length, backend):
    return magnitude.new_empty((magnitude.shape[0], length))


def fd_mfcc_triton(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """FD-MFCC on the GPU with Triton. waves: (B, L) float32 contiguous -> (B, 3, n_mfcc, T) float32."""
    if not config.center or config.pad_mode != "constant":
        raise ParameterError(f"triton fd_mfcc needs center=True and pad_mode='constant', got "
                             f"center={config.center}, pad_mode={config.pad_mode!r}")
    if config.n_frames(waves.shape[1]) > MAX_TRITON_FRAMES:
        raise ParameterError(f"triton fd_mfcc handles up to {MAX_TRITON_FRAMES} frames per clip (one program per "
                             f"clip), got {config.n_frames(waves.shape[1])} for length {waves.shape[1]}")
    return _fd_mfcc_triton_op(waves, *(getattr(config, name) for name in _FEATURE_FIELDS))


def _griffin_lim(backend: str, magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
                 window: str, n_iter: int, momentum: float, init_phase: Optional[torch.Tensor],
                 length: Optional[int], generator: Optional[torch.Generator]) -> torch.Tensor:
    B, F, T = magnitude.shape
    if F != n_fft // 2 + 1:
        raise ParameterError(f"magnitude has {F} frequency bins, expected n_fft//2+1 = {n_fft // 2 + 1}")
    out_len = hop_length * (T - 1) if length is None else int(length)
    if 1 + out_len // hop_length != T:
        raise ParameterError(f"length={length} gives {1 + out_len // hop_length} frames, magnitude has {T}")
    if init_phase is None:
        gen_device = generator.device if generator is not None else magnitude.device
        u = torch.rand(magnitude.shape, generator=generator, device=gen_device, dtype=magnitude.dtype)
        init_phase = torch.polar(torch.ones_like(u), 2 * math.pi * u).to(magnitude.device)
    return _griffin_lim_op(magnitude.contiguous(), init_phase, n_fft, hop_length, win_length, window, n_iter,
                           float(momentum), out_len, backend)


def griffin_lim_triton(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                       n_iter: int, momentum: float, init_phase: Optional[torch.Tensor] = None,
                       length: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fast Griffin-Lim with Triton kernels. magnitude (B, F, T) real -> signal (B, L), L = length or hop*(T-1)."""
    return _griffin_lim("triton", magnitude, n_fft, hop_length, win_length, window, n_iter, momentum,
                        init_phase, length, generator)


def griffin_lim_cuda(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                     n_iter: int, momentum: float, init_phase: Optional[torch.Tensor] = None,
                     length: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fast Griffin-Lim with the CUDA kernels of ddfad_fast._C; same contract as :func:`griffin_lim_triton`."""
    return _griffin_lim("cuda", magnitude, n_fft, hop_length, win_length, window, n_iter, momentum,
                        init_phase, length, generator)


backends.register("fd_mfcc", "triton", fd_mfcc_triton, devices=("cuda",), available=_triton_available,
                  dtypes=(torch.float32,))
backends.register("griffin_lim", "triton", griffin_lim_triton, devices=("cuda",), available=_triton_available)
backends.register("griffin_lim", "cuda", griffin_lim_cuda, devices=("cuda",), available=_cuda_available)
