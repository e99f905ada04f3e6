"""The g++ build of csrc/cuda/host/harness.cc (the CUDA kernel bodies on host threads) for the CUDA logic tests.

``build(out_dir)`` compiles it and returns the ctypes library with every entry point typed; ``tables`` gives the
tables of ddfad::fd_mfcc as its CUDA implementation receives them (tables.feature_tables: float32, int64 indices).
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ddfad_fast.config import FeatureConfig
from ddfad_fast.ops import tables as dsp

CUDA_DIR = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
HARNESS = CUDA_DIR / "host" / "harness.cc"

_I64, _I32, _F32, _F64, _P = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_double, ctypes.c_void_p
SIGNATURES = {
    "ddfad_frame_waves": ([_P, _P, _P, _I64, _I64, _I64, _I32, _I32, _F32], None),
    "ddfad_mfcc_post": ([_P, _P, _P, _I32] + [_P] * 6 + [_I64] + [_I32] * 5 + [_F32] * 3 + [_I32] * 4, None),
    "ddfad_fd_mfcc_fused": ([_P, _P, _P, _P, _I32] + [_P] * 6 + [_I64, _I64] + [_I32] * 6 + [_F32] * 4
                            + [_I32] * 5, _I32),
    "ddfad_fd_mfcc_clip": ([_I32, _P, _P, _I32, _I32, _P, _P, _I32, _P, _P, _P, _P, _I64, _I64, _I32, _I32]
                           + [_F32] * 4 + [_I32, _I64, _I32], _I32),
    "ddfad_fd_mfcc_clip_smem_floats": ([_I32, _I32, _I64, _I32, _I32], _I64),
    "ddfad_fast_div_errors": ([_I32], _I64),
    "ddfad_gla_step_f64": ([_P] * 4 + [_I64, _I64, _F64, _F64], None),
    "ddfad_overlap_add_f64": ([_P] * 4 + [_I64, _I64, _I32, _I32, _I64, _I32], None),
    "ddfad_gla_fused_f64": ([_P] * 6 + [_I64, _I32, _I32, _I32, _I64, _F64, _F64, _I32, _I32, _I32], _I32),
    "ddfad_gla_fused_f32": ([_P] * 6 + [_I64, _I32, _I32, _I32, _I64, _F32, _F32, _I32, _I32, _I32], _I32),
    "ddfad_fft_f64": ([_P, _I32, _I32, _P, _I32, _I32, _I32], _I32),
    "ddfad_gla_fused_smem_scalars": ([_I32, _I32, _I32], _I64),
}

# shapes of the per-clip kernel compiled into the harness (harness.cc clip_shape): (n_fft, points per lane,
# n_mels, n_mfcc, delta width) -> id; ids 0 and 1 are the instances of csrc/cuda/fd_mfcc_clip.cu
CLIP_SHAPES = {(256, 4, 40, 20, 9): 0, (512, 8, 40, 20, 9): 1, (64, 4, 16, 8, 5): 2, (128, 8, 24, 13, 9): 3,
               (256, 8, 40, 20, 9): 4}


def build(out_dir: Path) -> ctypes.CDLL:
    out = Path(out_dir) / "libharness.so"
    cmd = ["g++", "-std=c++17", "-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Werror", f"-I{CUDA_DIR}",
           str(HARNESS), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))
    for name, (args, restype) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = restype
    return lib


def ptr(a: np.ndarray):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


def tables(cfg: FeatureConfig, length: int) -> Tuple[dsp.FeatureTables, Dict[str, np.ndarray]]:
    """tables.feature_tables of cfg as the CUDA operator takes them: float32 arrays, int64 indices."""
    tab = dsp.feature_tables(cfg, length)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    return tab, dict(window=f32(tab.window), bands=i64(tab.mel_bands), weights=f32(tab.mel_weights), dct=f32(tab.dct),
                     start=i64(tab.delta_start), coef=f32(tab.delta_coef))


def top_db_arg(cfg: FeatureConfig) -> float:
    return -1.0 if cfg.top_db is None else float(cfg.top_db)


def fft_twiddles(n_fft: int) -> np.ndarray:
    """(n_fft // 2, 2) float64: (cos, sin) of -2 pi k / n_fft."""
    angle = -2.0 * np.pi * np.arange(n_fft // 2) / n_fft
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)
