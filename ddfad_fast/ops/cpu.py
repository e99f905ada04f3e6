"""CPU fast paths of the ops ``mfcc``, ``fd_mfcc`` and ``griffin_lim``: backends ``cpu`` and ``numba``.

``cpu`` (the dispatcher's choice for CPU tensors): the C++ operators of ``ddfad_fast._C`` (csrc/cpu,
OpenMP over groups of clips): ``torch.ops.ddfad.fd_mfcc`` (pre-emphasis + framing, at::fft rfft, then
power -> sparse mel -> dB with a per-clip top_db floor -> DCT -> deltas, fused per clip) and
``torch.ops.ddfad.griffin_lim`` (the whole loop in C++ on frame-major state, each task iterating on its
own group of clips while they stay in its cache).

``numba``: the same pipelines with numba kernels around torch.fft (``_numba_kernels``). It lost every
measured case to ``cpu`` (bench/features.py, bench/griffin_lim.py), so it is not in the automatic
order: it runs only when forced (``DDFAD_BACKEND=numba`` or ``backend="numba"``), for comparison.

Both take every constant from :mod:`ddfad_fast.ops.tables` (frame count, window support, tables, dB
reference). This module imports neither numba nor the extension: each backend probes for its
dependency on first use, so a missing numba never hides the C++ backend and vice versa.
"""
from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import _ext, dispatch, tables
from ..config import FeatureConfig
from ..errors import BackendUnavailableError, ParameterError

# Clips per group in the C++ operators (each task runs its group through every stage while the group's
# frames and spectra stay in that core's cache); 0 lets the operator fit a group to ~1 MiB (csrc/cpu/common.h).
FEATURE_GROUP = 0
GLA_GROUP = 0
NUMBA_FEATURE_CHUNK = 32


# ----------------------------------------------------------------------------------------------------
# availability
_extension_error: Optional[str] = None


@lru_cache(maxsize=1)
def extension_loaded() -> bool:
    """True when ``ddfad_fast._C`` imports and defines the CPU operators (else :func:`extension_error` says why)."""
    global _extension_error
    _extension_error = _ext.ops_error()
    return _extension_error is None


def extension_error() -> Optional[str]:
    """Why ``ddfad_fast._C`` cannot be used (its import error), or None when it loads."""
    return None if extension_loaded() else _extension_error


@lru_cache(maxsize=1)
def numba_available() -> bool:
    """True when numba is installed (its kernels compile on first use and are cached on disk)."""
    return importlib.util.find_spec("numba") is not None


def _extension_reason() -> str:
    return f"the C++ extension ddfad_fast._C did not load ({extension_error()})"


def _ops():
    """``torch.ops.ddfad``, after loading the extension that defines its CPU operators."""
    if not extension_loaded():
        raise BackendUnavailableError(f"{_extension_reason()}; pip install --no-build-isolation -e . builds it "
                                      "(DDFAD_NO_EXT=1 skips it)")
    return torch.ops.ddfad


def _kernels():
    if not numba_available():
        raise BackendUnavailableError("the numba backend needs numba (pip install numba)")
    from . import _numba_kernels
    return _numba_kernels


# ----------------------------------------------------------------------------------------------------
# constants: every table, the frame count and the window's support come from tables.feature_tables
def _feature_tensors(config: FeatureConfig, length: int,
                     dtype: torch.dtype) -> Tuple[tables.FeatureTables, Dict[str, Tensor]]:
    """(the dsp tables of ``config`` for clips of ``length`` samples, those the kernels read as cached CPU tensors)."""
    tab = tables.feature_tables(config, length)
    return tab, {
        "window": tables.as_tensor(tab.window, dtype),
        "mel_bands": tables.as_tensor(tab.mel_bands, torch.int64),
        "mel_weights": tables.as_tensor(tab.mel_weights, dtype),
        "dct": tables.as_tensor(tab.dct, dtype),
        "delta_start": tables.as_tensor(tab.delta_start, torch.int64),
        "delta_coef": tables.as_tensor(tab.delta_coef, dtype),
    }


def _check_feature_config(config: FeatureConfig, backend: str) -> None:
    if not config.center or config.pad_mode != "constant":
        raise ParameterError(f"{backend} fd_mfcc needs center=True and pad_mode='constant', got "
                             f"center={config.center}, pad_mode={config.pad_mode!r}")


# ----------------------------------------------------------------------------------------------------
# backend "cpu": C++ operators
def _fd_mfcc_cpu(waves: Tensor, config: FeatureConfig, with_deltas: bool) -> Tensor:
    _check_feature_config(config, "cpu")
    tab, t = _feature_tensors(config, waves.shape[1], waves.dtype)
    top_db = None if config.top_db is None else float(config.top_db)
    return _ops().fd_mfcc(waves.contiguous(), t["window"], *tab.window_support, t["mel_bands"], t["mel_weights"],
                          t["dct"], t["delta_start"], t["delta_coef"], tab.n_frames, config.hop_length,
                          float(config.preemphasis), float(config.amin), tab.ref_db, top_db, with_deltas, FEATURE_GROUP)


@dispatch.recorded("fd_mfcc", "cpu")
def fd_mfcc_cpu(waves: Tensor, config: FeatureConfig) -> Tensor:
    """FD-MFCC with the C++ extension: (B, L) float32/float64 contiguous -> (B, 3, n_mfcc, T), same dtype."""
    return _fd_mfcc_cpu(waves, config, True)


@dispatch.recorded("mfcc", "cpu")
def mfcc_cpu(waves: Tensor, config: FeatureConfig) -> Tensor:
    """MFCCs with the C++ extension: (B, L) -> (B, n_mfcc, T), same dtype."""
    return _fd_mfcc_cpu(waves, config, False)


def _gla_tables(n_fft: int, hop_length: int, win_length: int, window: str, n_frames: int,
                dtype: torch.dtype) -> Tuple[Tensor, Tuple[int, int], Tensor]:
    """(window, its non-zero taps [lo, hi), inverse envelope), all from tables."""
    win = tables.as_tensor(tables.window(window, win_length, n_fft), dtype)
    inv_env = tables.as_tensor(tables.inverse_envelope(window, win_length, n_fft, hop_length, n_frames), dtype)
    return win, tables.window_support(window, win_length, n_fft), inv_env


@dispatch.recorded("griffin_lim", "cpu")
def griffin_lim_cpu(magnitude: Tensor, n_fft: int, hop_length: int, win_length: int, window: str, n_iter: int,
                    momentum: float, init_phase: Tensor, length: int) -> Tensor:
    """Fast Griffin-Lim with the C++ extension: magnitude (B, F, T), init_phase (B, F, T) complex -> (B, length)."""
    win, (lo, hi), inv_env = _gla_tables(n_fft, hop_length, win_length, window, magnitude.shape[2], magnitude.dtype)
    return _ops().griffin_lim(magnitude.contiguous(), init_phase.contiguous(), win, lo, hi, inv_env, hop_length,
                              n_iter, float(momentum), length, GLA_GROUP)


# ----------------------------------------------------------------------------------------------------
# backend "numba": numba kernels around torch.fft
def _fd_mfcc_numba(waves: Tensor, config: FeatureConfig, with_deltas: bool) -> Tensor:
    _check_feature_config(config, "numba")
    kernels = _kernels()
    tab, tensors = _feature_tensors(config, waves.shape[1], waves.dtype)
    t = {k: v.numpy() for k, v in tensors.items()}
    top_db = -1.0 if config.top_db is None else float(config.top_db)
    source = waves.contiguous().numpy()
    parts = []
    for start in range(0, source.shape[0], NUMBA_FEATURE_CHUNK):     # chunks keep the FFT's data in cache
        frames = kernels.frame_waves(source[start:start + NUMBA_FEATURE_CHUNK], t["window"], *tab.window_support,
                                     config.hop_length, tab.n_frames, float(config.preemphasis))
        spec = torch.fft.rfft(torch.from_numpy(frames), dim=-1)
        parts.append(kernels.spectrum_to_features(torch.view_as_real(spec).numpy(), t["mel_bands"],
                                                  t["mel_weights"], t["dct"], t["delta_start"], t["delta_coef"],
                                                  float(config.amin), tab.ref_db, top_db, with_deltas))
    out = torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return out if with_deltas else out[:, 0]


@dispatch.recorded("fd_mfcc", "numba")
def fd_mfcc_numba(waves: Tensor, config: FeatureConfig) -> Tensor:
    """FD-MFCC with numba kernels: (B, L) float32/float64 -> (B, 3, n_mfcc, T), same dtype."""
    return _fd_mfcc_numba(waves, config, True)


@dispatch.recorded("mfcc", "numba")
def mfcc_numba(waves: Tensor, config: FeatureConfig) -> Tensor:
    """MFCCs with numba kernels: (B, L) -> (B, n_mfcc, T), same dtype."""
    return _fd_mfcc_numba(waves, config, False)


@dispatch.recorded("griffin_lim", "numba")
def griffin_lim_numba(magnitude: Tensor, n_fft: int, hop_length: int, win_length: int, window: str, n_iter: int,
                      momentum: float, init_phase: Tensor, length: int) -> Tensor:
    """Fast Griffin-Lim with numba overlap-add / step kernels around torch.fft; contract of :func:`griffin_lim_cpu`."""
    kernels = _kernels()
    win, (lo, hi), inv_env = _gla_tables(n_fft, hop_length, win_length, window, magnitude.shape[2], magnitude.dtype)
    win, inv_env = win.numpy(), inv_env.numpy()
    mag = magnitude.transpose(1, 2).contiguous()                                      # (B, T, F)
    x = (init_phase.to(magnitude.dtype.to_complex()) * magnitude).transpose(1, 2).contiguous()
    cur, prev = torch.empty_like(x), torch.zeros_like(x)
    mag_np, x_np = mag.numpy(), torch.view_as_real(x).numpy()
    coef = momentum / (1.0 + momentum)
    for _ in range(n_iter):
        frames = kernels.overlap_add(torch.fft.irfft(x, n=n_fft).numpy(), win, lo, hi, inv_env, hop_length, length,
                                     True)
        torch.fft.rfft(torch.from_numpy(frames), out=cur)
        kernels.gla_step(x_np, torch.view_as_real(cur).numpy(), torch.view_as_real(prev).numpy(), mag_np, coef)
        cur, prev = prev, cur
    signal = kernels.overlap_add(torch.fft.irfft(x, n=n_fft).numpy(), win, lo, hi, inv_env, hop_length, length,
                                 False)
    return torch.from_numpy(signal[:, 0])


# ----------------------------------------------------------------------------------------------------
for _op, _cpu, _numba in (("fd_mfcc", fd_mfcc_cpu, fd_mfcc_numba), ("mfcc", mfcc_cpu, mfcc_numba),
                          ("griffin_lim", griffin_lim_cpu, griffin_lim_numba)):
    dispatch.register(_op, "cpu", _cpu, devices=("cpu",), available=extension_loaded, why_unavailable=_extension_reason)
    dispatch.register(_op, "numba", _numba, devices=("cpu",), available=numba_available,
                      why_unavailable=lambda: "numba is not installed (pip install numba)")
    # measured on 2 cores (bench/results/*.json): the C++ backend wins every op, preset and batch size.
    # Without it, numba beats the reference for Griffin-Lim (3.3x at B=16) but not for fd_mfcc at B=64
    # (0.84x): numba is a fallback for griffin_lim only, and forced-only for the feature ops.
    dispatch.set_preference(_op, "cpu", ("cpu", "numba") if _op == "griffin_lim" else ("cpu",))
del _op, _cpu, _numba
