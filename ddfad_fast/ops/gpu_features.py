"""FD-MFCC and MFCC on the GPU: the ``cuda`` and ``triton`` implementations.

* ``cuda``: the operator ``ddfad::fd_mfcc`` of ``ddfad_fast._C``, the one schema whose CPU implementation the
  ``cpu`` backend calls; on CUDA tensors it runs csrc/cuda (one clip per block for the shipped presets'
  shapes, tiles of frames or cuFFT for the others). A C++ operator with a Meta kernel: torch.compile
  traces it as it is.
* ``triton``: kernels/fd_mfcc.py around torch.fft.rfft.

Every table lives in a :class:`FeaturePlan`, built once per (FeatureConfig, clip length, device) and cached:
an eager call validates its tensor and makes one operator call, with no config rebuilt and no table
recomputed. Under torch.compile both backends run inside the custom operator ``ddfad::fd_mfcc_gpu`` (the
config as scalars, a fake implementation for the shapes), so compiled callers keep one graph without tracing
the plan's cache.
:class:`FdMfccGraph` replays a captured call for a fixed batch shape. No TF32 anywhere: every product is an
fp32 FMA.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import _ext, tables
from ..config import FeatureConfig
from ..errors import ParameterError

MEL_GROUP = 16                 # mel bands per group of the Triton mel pass (kernels/fd_mfcc.py MEL_GROUP)


@dataclass(frozen=True, eq=False)
class FeaturePlan:
    """The device constants of one FeatureConfig and clip length (tables.feature_tables), ready for the kernels.

    float32 unless said; ``mel_bands`` and ``delta_start`` int64 (the layout of ``ddfad::fd_mfcc``), the Triton
    path's dense ``mel``, ``groups`` and ``delta_start32`` int32.
    """

    config: FeatureConfig
    length: int
    n_frames: int               # T
    ref_db: float               # tables.db_reference(amin, ref)
    top_db: Optional[float]
    window: Tensor              # (n_fft,)
    win_lo: int                 # the window's non-zero taps [win_lo, win_hi)
    win_hi: int
    mel_bands: Tensor           # (n_mels, 2) int64 [lo, hi)
    mel_weights: Tensor         # (n_mels, W_mel)
    dct: Tensor                 # (n_mfcc, n_mels)
    delta_start: Tensor         # (T,) int64
    delta_coef: Tensor          # (2, W, T)
    mel: Tensor                 # (n_mels, F) dense (Triton)
    groups: Tensor              # (ceil(n_mels / MEL_GROUP), 2) int32 (Triton)
    delta_start32: Tensor       # (T,) int32 (Triton)

    def native(self, waves: Tensor, with_deltas: bool = True) -> Tensor:
        """``ddfad::fd_mfcc`` of ddfad_fast._C on ``waves`` (B, length) contiguous, its CUDA or CPU kernel by device:
        (B, 3, n_mfcc, T), or (B, n_mfcc, T) without deltas."""
        c = self.config
        return torch.ops.ddfad.fd_mfcc(waves, self.window, self.win_lo, self.win_hi, self.mel_bands,
                                       self.mel_weights, self.dct, self.delta_start, self.delta_coef, self.n_frames,
                                       c.hop_length, float(c.preemphasis), float(c.amin), self.ref_db, self.top_db,
                                       with_deltas, 0)

    def triton(self, waves: Tensor, with_deltas: bool = True) -> Tensor:
        """The Triton pipeline on ``waves`` (B, length) float32 contiguous: same result as :meth:`native`."""
        return triton_pipeline(waves, self, with_deltas)

    def cuda_kernel(self) -> str:
        """Which CUDA kernel :meth:`native` runs here: "clip", "tiled" or "cufft" (needs the CUDA build)."""
        c = self.config
        return torch.ops.ddfad.fd_mfcc_kernel(c.n_fft, c.n_mels, c.n_mfcc, c.delta_width,
                                              int(self.mel_weights.shape[1]), self.length, self.n_frames,
                                              c.hop_length)


@functools.lru_cache(maxsize=64)
def feature_plan(config: FeatureConfig, length: int, device: torch.device) -> FeaturePlan:
    """The :class:`FeaturePlan` of ``config`` for clips of ``length`` samples on ``device`` (cached)."""
    if not config.center or config.pad_mode != "constant":
        raise ParameterError(f"GPU fd_mfcc needs center=True and pad_mode='constant', got center={config.center}, "
                             f"pad_mode={config.pad_mode!r}")
    _ext.load_error()                     # the operators of ddfad_fast._C (torch.ops.ddfad.*) where it loads
    tab = tables.feature_tables(config, length)
    groups = tables.mel_groups(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max,
                               MEL_GROUP)
    f32, i32, i64 = torch.float32, torch.int32, torch.int64
    return FeaturePlan(
        config=config, length=length, n_frames=tab.n_frames, ref_db=tab.ref_db,
        top_db=None if config.top_db is None else float(config.top_db),
        window=tables.as_tensor(tab.window, f32, device),
        win_lo=tab.window_support[0], win_hi=tab.window_support[1],
        mel_bands=tables.as_tensor(tab.mel_bands, i64, device),
        mel_weights=tables.as_tensor(tab.mel_weights, f32, device),
        dct=tables.as_tensor(tab.dct, f32, device),
        delta_start=tables.as_tensor(tab.delta_start, i64, device),
        delta_coef=tables.as_tensor(tab.delta_coef, f32, device),
        mel=tables.as_tensor(tab.mel, f32, device),
        groups=tables.as_tensor(groups, i32, device),
        delta_start32=tables.as_tensor(tab.delta_start, i32, device),
    )


def on_device(tensor: Tensor, backend: str) -> bool:
    """CUDA tensors; CPU tensors too for Triton under TRITON_INTERPRET=1 (the tests without a GPU)."""
    return tensor.is_cuda or (backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1")


def checked_plan(backend: str, waves: Tensor, config: FeatureConfig) -> FeaturePlan:
    if waves.dim() != 2 or waves.dtype != torch.float32 or not on_device(waves, backend):
        raise ParameterError(f"{backend} fd_mfcc needs (B, L) float32 CUDA waves, got {tuple(waves.shape)} "
                             f"{waves.dtype} on {waves.device}")
    return feature_plan(config, waves.shape[1], waves.device)


CONFIG_FIELDS = ("sample_rate", "preemphasis", "n_fft", "win_length", "hop_length", "window", "n_mels", "fmin",
                 "fmax", "top_db", "amin", "ref", "n_mfcc", "delta_width")


def fd_mfcc(backend: str, waves: Tensor, config: FeatureConfig, with_deltas: bool = True) -> Tensor:
    """FD-MFCC (or MFCC without deltas) of ``waves`` (B, L) float32 with the ``cuda`` or ``triton`` kernels."""
    if torch.compiler.is_compiling():
        if waves.dim() != 2:
            raise ParameterError(f"{backend} fd_mfcc needs (B, L) waves, got {tuple(waves.shape)}")
        return torch.ops.ddfad.fd_mfcc_gpu(waves.contiguous(), backend, with_deltas,
                                           *(getattr(config, name) for name in CONFIG_FIELDS))
    plan = checked_plan(backend, waves, config)
    waves = waves.contiguous()
    return plan.native(waves, with_deltas) if backend == "cuda" else plan.triton(waves, with_deltas)


def triton_pipeline(waves: Tensor, plan: FeaturePlan, with_deltas: bool) -> Tensor:
    """Framing (Triton) -> torch.fft.rfft -> the two post-FFT Triton passes."""
    from ddfad_fast.kernels.fd_mfcc import frame_waves, mfcc_from_spectrum

    c = plan.config
    B, T = waves.shape[0], plan.n_frames
    frames = frame_waves(waves, plan.window, T, c.hop_length, c.preemphasis)
    spec = torch.fft.rfft(frames).view(B, T, c.n_fft // 2 + 1)
    out = mfcc_from_spectrum(spec, plan.mel, plan.groups, plan.dct, plan.delta_start32, plan.delta_coef,
                             float(c.amin), plan.ref_db, plan.top_db)
    return out if with_deltas else out[:, 0].contiguous()


@torch.library.custom_op("ddfad::fd_mfcc_gpu", mutates_args=())
def fd_mfcc_gpu_op(waves: Tensor, backend: str, with_deltas: bool, sample_rate: int, preemphasis: float, n_fft: int,
                   win_length: int, hop_length: int, window: str, n_mels: int, fmin: float, fmax: Optional[float],
                   top_db: Optional[float], amin: float, ref: float, n_mfcc: int, delta_width: int) -> Tensor:
    """fd_mfcc of a GPU backend as one operator for torch.compile: the config's fields as scalars."""
    config = FeatureConfig(sample_rate=sample_rate, fixed_length=None, preemphasis=preemphasis, n_fft=n_fft,
                           win_length=win_length, hop_length=hop_length, window=window, n_mels=n_mels, fmin=fmin,
                           fmax=fmax, top_db=top_db, amin=amin, ref=ref, n_mfcc=n_mfcc, delta_width=delta_width)
    return fd_mfcc(backend, waves, config, with_deltas)


@fd_mfcc_gpu_op.register_fake
def _(waves, backend, with_deltas, sample_rate, preemphasis, n_fft, win_length, hop_length, window, n_mels, fmin,
      fmax, top_db, amin, ref, n_mfcc, delta_width):
    T = tables.n_frames(waves.shape[1], n_fft, hop_length)
    return waves.new_empty((waves.shape[0], 3, n_mfcc, T) if with_deltas else (waves.shape[0], n_mfcc, T))


# ---- CUDA graphs of fixed shapes -------------------------------------------------------------------------
class FdMfccGraph:
    """One fd_mfcc call of a fixed (batch, length) captured in a CUDA graph: :attr:`waves` is the input buffer
    (copy clips into it), ``graph()`` replays the call and returns :attr:`out` (overwritten by each replay).

    Host time per replay is one graph launch (a few microseconds) instead of the operator call's.
    """

    def __init__(self, config: FeatureConfig, batch: int, length: int, device: torch.device | str = "cuda",
                 backend: str = "cuda", with_deltas: bool = True):
        self.waves = torch.zeros(batch, length, device=device)
        plan = checked_plan(backend, self.waves, config)
        run = (lambda: plan.native(self.waves, with_deltas)) if backend == "cuda" else (
            lambda: plan.triton(self.waves, with_deltas))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()                                    # warm-up outside the capture: kernels, cuFFT plans
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self.out = run()

    def __call__(self) -> Tensor:
        self._graph.replay()
        return self.out
