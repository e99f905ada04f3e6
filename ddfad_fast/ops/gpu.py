"""GPU backends ``triton`` and ``cuda`` of the ops ``fd_mfcc``, ``mfcc`` and ``griffin_lim``: availability and
registration with the dispatcher. The implementations are in :mod:`~ddfad_fast.ops.gpu_features` and
:mod:`~ddfad_fast.ops.gpu_gla`.

One operator schema per operation, implemented per device (as pytorch_scatter does): ``cuda`` calls
``torch.ops.ddfad.fd_mfcc`` / ``torch.ops.ddfad.griffin_lim`` of ``ddfad_fast._C``, the same operators the
``cpu`` backend calls, which dispatch by the tensor's device to csrc/cuda or csrc/cpu. ``triton`` runs the
Triton kernels (kernels/). For torch.compile, each op of either backend is one custom operator
(``ddfad::fd_mfcc_gpu``, ``ddfad::griffin_lim_gpu``). This registry only chooses between the two.

Importing this module needs neither triton nor a CUDA build: kernels are imported on first use and
availability is probed lazily.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch

from . import _ext, dispatch, gpu_features, gpu_gla
from ..config import FeatureConfig

_CUDA_FD_MFCC_OPS = ("fd_mfcc", "fd_mfcc_clip", "fd_mfcc_fused", "frame_waves", "mfcc_post")
_CUDA_GLA_OPS = ("griffin_lim", "gla_step", "overlap_add", "overlap_add_out", "gla_fused_step")
CUDA_OPS = _CUDA_FD_MFCC_OPS + _CUDA_GLA_OPS


# ----------------------------------------------------------------------------------------------
# availability
# ----------------------------------------------------------------------------------------------
def _triton_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def _jit_build() -> None:
    """Build the CUDA operators with torch.utils.cpp_extension.load (only with DDFAD_CUDA_JIT=1).

    For development and the GPU suite when ``ddfad_fast._C`` cannot be imported at all (so the two never
    define the same schema): csrc/cuda plus csrc/cpu, which holds the shared schemas and the CPU kernels.
    """
    from torch.utils.cpp_extension import load

    root = Path(__file__).resolve().parents[2] / "csrc"
    sources = sorted(str(p) for p in (root / "cuda").glob("*.cu")) + sorted(str(p) for p in (root / "cuda").glob("*.cpp"))
    sources += sorted(str(p) for p in (root / "cpu").glob("*.cpp"))
    load(name="ddfad_cuda_jit", sources=sources, extra_include_paths=[str(root), str(root / "cuda")],
         extra_cflags=["-O3", "-std=c++20", "-fopenmp", "-DWITH_CUDA", "-DDDFAD_NO_LIBMVEC"], extra_ldflags=["-fopenmp"],
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
# backends
@dispatch.recorded("fd_mfcc", "triton")
def fd_mfcc_triton(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """FD-MFCC with Triton kernels. waves: (B, L) float32 CUDA -> (B, 3, n_mfcc, config.n_frames(L)) float32."""
    return gpu_features.fd_mfcc("triton", waves, config)


@dispatch.recorded("fd_mfcc", "cuda")
def fd_mfcc_cuda(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """FD-MFCC with ``ddfad::fd_mfcc`` on CUDA (ddfad_fast._C); same contract as :func:`fd_mfcc_triton`."""
    return gpu_features.fd_mfcc("cuda", waves, config)


@dispatch.recorded("mfcc", "triton")
def mfcc_triton(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """MFCCs with the Triton FD-MFCC kernels (its first channel).
    waves: (B, L) float32 CUDA -> (B, n_mfcc, config.n_frames(L)) float32."""
    return gpu_features.fd_mfcc("triton", waves, config, with_deltas=False)


@dispatch.recorded("mfcc", "cuda")
def mfcc_cuda(waves: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """MFCCs with ``ddfad::fd_mfcc`` on CUDA without its deltas; same contract as :func:`mfcc_triton`."""
    return gpu_features.fd_mfcc("cuda", waves, config, with_deltas=False)


@dispatch.recorded("griffin_lim", "triton")
def griffin_lim_triton(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                       n_iter: int, momentum: float, init_phase: torch.Tensor, length: int) -> torch.Tensor:
    """Fast Griffin-Lim with Triton kernels and cuFFT.

    magnitude: (B, n_fft//2 + 1, T) float32/float64 CUDA; init_phase: (B, F, T) complex unit phasors;
    length: output samples (tables.n_frames(length, n_fft, hop_length) must equal T). Returns (B, length),
    magnitude's dtype.
    """
    gpu_gla.check_args("triton", magnitude, n_fft, hop_length, init_phase, length, 0, gpu_features.on_device)
    return gpu_gla.griffin_lim_gpu_op(magnitude.contiguous(), init_phase.to(magnitude.device), n_fft, hop_length,
                                      win_length, window, int(n_iter), float(momentum), int(length), "triton", 0, 0)


@dispatch.recorded("griffin_lim", "cuda")
def griffin_lim_cuda(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, window: str,
                     n_iter: int, momentum: float, init_phase: torch.Tensor, length: int,
                     tile_frames: int = 0, max_radix: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim with ``ddfad::griffin_lim`` on CUDA; same contract as :func:`griffin_lim_triton`.

    Power-of-two n_fft runs one fused kernel per iteration. ``tile_frames`` (output frames per block) and
    ``max_radix`` (largest FFT pass) other than 0 pick a variant of it, ``tile_frames < 0`` the cuFFT path
    (for benchmarks).
    """
    gpu_gla.check_args("cuda", magnitude, n_fft, hop_length, init_phase, length, max_radix, gpu_features.on_device)
    return gpu_gla.griffin_lim_gpu_op(magnitude.contiguous(), init_phase.to(magnitude.device), n_fft, hop_length,
                                      win_length, window, int(n_iter), float(momentum), int(length), "cuda",
                                      int(tile_frames), int(max_radix))


# Preferred GPU backend per op, from bench/gpu_bench.py on an H100 (2026-11-25) and an H200 (2026-11-26,
# bench/results/gpu_suite/): fd_mfcc cuda 1.6-3.4x faster than triton at B = 64 / 1024; griffin_lim (32
# iterations) cuda 1.2-4x faster at B = 64 and within 15 % of triton at B = 1024.
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
del _op, _triton, _cuda
