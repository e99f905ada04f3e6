"""The per-clip FD-MFCC kernel body (csrc/cuda/fd_mfcc_clip.h, warp_fft.h) on host threads.

csrc/cuda/host/harness.cc runs fd_mfcc_clip_run with 32 host threads per warp: __syncwarp is a barrier of the
warp's threads, each shuffle an exchange buffer between two such barriers, __syncthreads a barrier of the
block, and shared memory starts as NaN. Its parameters come from make_fd_mfcc_clip_params, its shared memory
size from the launcher's ClipLayout. Compared with the float64 reference at the tolerances of
docs/architecture.md section 4, on white noise, coloured (1/f) noise, a quiet clip beside loud ones
(per-clip top_db) and real FSDD clips.
"""
import shutil

import numpy as np
import pytest
import torch

from ddfad_fast.config import FeatureConfig
from ddfad_fast.ops import reference as ref
from cuda_harness import CLIP_SHAPES, build, ptr, tables, top_db_arg
from tolerances import tol

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")

FSDD = FeatureConfig.fsdd()
SPEECH16K = FeatureConfig.speech16k()


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build(tmp_path_factory.mktemp("harness_clip"))


def _shape_id(cfg: FeatureConfig, per_lane: int) -> int:
    return CLIP_SHAPES[(cfg.n_fft, per_lane, cfg.n_mels, cfg.n_mfcc, cfg.delta_width)]


def _clip(lib, waves: np.ndarray, cfg: FeatureConfig, per_lane: int, n_blocks: int = 2, nth: int = 64,
          with_deltas: bool = True) -> np.ndarray:
    B, L = waves.shape
    tab, t = tables(cfg, L)
    T = tab.n_frames
    out = np.full((B, 3, cfg.n_mfcc, T) if with_deltas else (B, cfg.n_mfcc, T), np.nan, dtype=np.float32)
    rc = lib.ddfad_fd_mfcc_clip(_shape_id(cfg, per_lane), ptr(np.ascontiguousarray(waves, dtype=np.float32)),
                                ptr(t["window"]), *tab.window_support, ptr(t["bands"]), ptr(t["weights"]),
                                t["weights"].shape[1], ptr(t["dct"]), ptr(t["start"]), ptr(t["coef"]), ptr(out), B, L,
                                T, cfg.hop_length, cfg.preemphasis, cfg.amin, tab.ref_db, top_db_arg(cfg),
                                int(with_deltas), n_blocks, nth)
    assert rc == 0
    return out


def _check(got: np.ndarray, waves: np.ndarray, cfg: FeatureConfig) -> None:
    want = ref.fd_mfcc(torch.from_numpy(np.asarray(waves, dtype=np.float64)), cfg).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))


def _coloured(rng: np.random.Generator, shape, exponent: float = 1.0) -> np.ndarray:
    """1/f^exponent noise: most of the power at low frequencies, bands 20-40 dB below it at the top."""
    spec = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    f = np.arange(spec.shape[-1], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n=shape[-1], axis=-1)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("cfg,per_lane", [(FSDD, 4), (SPEECH16K, 8), (FSDD, 8)], ids=["fsdd", "speech16k", "fsdd-r8"])
def test_presets_white_and_coloured_noise_and_a_quiet_clip(lib, cfg, per_lane):
    """Both compiled instances (and fsdd at 8 points a lane): 3 clips on 2 persistent blocks, so one block runs
    two clips through the same shared memory; the quiet clip equals its solo result bit for bit."""
    rng = np.random.default_rng(cfg.n_fft + per_lane)
    L = cfg.fixed_length
    waves = np.stack([0.3 * rng.standard_normal(L), 1e-5 * rng.standard_normal(L), _coloured(rng, (L,))[...]])
    waves = waves.astype(np.float32)
    got = _clip(lib, waves, cfg, per_lane)
    assert got.shape == (3, 3, cfg.n_mfcc, cfg.n_frames(L))
    _check(got, waves, cfg)
    solo = _clip(lib, waves[1:2], cfg, per_lane, n_blocks=1)
    np.testing.assert_array_equal(got[1], solo[0])


@pytest.mark.parametrize("length,changes,per_lane", [
    (1203, {"n_fft": 64, "win_length": 48, "hop_length": 20, "n_mels": 16, "n_mfcc": 8, "delta_width": 5}, 4),
    (301, {"n_fft": 64, "win_length": 64, "hop_length": 37, "n_mels": 16, "n_mfcc": 8, "delta_width": 5,
           "top_db": None, "preemphasis": 0.0}, 4),                         # odd hop, no floor, no pre-emphasis
    (3, {"n_fft": 64, "win_length": 40, "hop_length": 16, "n_mels": 16, "n_mfcc": 8, "delta_width": 5}, 4),
    (2000, {"n_fft": 128, "win_length": 100, "hop_length": 50, "n_mels": 24, "n_mfcc": 13, "window": "hamming"}, 8),
    (170, {"n_fft": 128, "win_length": 128, "hop_length": 32, "n_mels": 24, "n_mfcc": 13}, 8),   # T = 6 < width
    (1, {}, 4),                                                             # one sample, one frame
    (7999, {}, 4),                                                          # L not a multiple of 4: scalar loads
])
def test_shapes_with_several_frames_per_warp(lib, length, changes, per_lane):
    """Frames spread over 8 lanes (4 frames a warp), odd hops, clips shorter than the delta width, a one-sample
    clip, the scalar load path; 1/f noise beside white noise."""
    cfg = FeatureConfig(fixed_length=None, **changes)
    rng = np.random.default_rng(length)
    waves = np.stack([0.3 * rng.standard_normal(length), _coloured(rng, (length,)) if length > 2
                      else 0.1 * rng.standard_normal(length)]).astype(np.float32)
    got = _clip(lib, waves, cfg, per_lane, n_blocks=1, nth=96)
    assert got.shape == (2, 3, cfg.n_mfcc, cfg.n_frames(length))
    _check(got, waves, cfg)


def test_without_deltas_is_the_mfcc_channel(lib):
    rng = np.random.default_rng(5)
    waves = (0.3 * rng.standard_normal((2, 8000))).astype(np.float32)
    full = _clip(lib, waves, FSDD, 4)
    mfcc = _clip(lib, waves, FSDD, 4, with_deltas=False)
    np.testing.assert_array_equal(mfcc, full[:, 0])


def test_fsdd_recordings(lib, fsdd_files):
    """Real spoken digits (the FSDD preset: fixed length 1 s, so clips are padded with zeros)."""
    import soundfile as sf

    clips = []
    for path in fsdd_files[:3]:
        y, sr = sf.read(path, dtype="float32")
        assert sr == 8000
        clips.append(np.pad(y[:8000], (0, max(0, 8000 - len(y)))))
    waves = np.stack(clips).astype(np.float32)
    _check(_clip(lib, waves, FSDD, 4), waves, FSDD)


def test_shared_memory_of_the_compiled_instances(lib):
    """The launcher's layout (ClipLayout): the fsdd clip fits three blocks in an SM's 228 KB, speech16k two."""
    fsdd = lib.ddfad_fd_mfcc_clip_smem_floats(0, 14, 8000, 101, 256) * 4
    speech = lib.ddfad_fd_mfcc_clip_smem_floats(1, 36, 16000, 126, 256) * 4
    assert 3 * (fsdd + 1024) <= 228 * 1024 < 4 * (fsdd + 1024), fsdd
    assert 2 * (speech + 1024) <= 228 * 1024, speech
    assert lib.ddfad_fd_mfcc_clip_smem_floats(9, 14, 8000, 101, 256) == -1


@pytest.mark.parametrize("d", [1, 2, 3, 7, 80, 128, 129, 257, 441, 1000003, (1 << 30) + 7])
def test_fast_division_is_exact(lib, d):
    assert lib.ddfad_fast_div_errors(d) == 0
