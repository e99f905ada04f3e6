"""The CUDA kernels' math, run on the CPU: csrc/cuda/host/harness.cc compiled with g++.

The kernel bodies (csrc/cuda/*_math.h) are host/device functions of (block, thread, thread count,
shared memory, barrier); the harness runs them with host threads and a real barrier, shared memory
poisoned with NaN, and is compared here with the plain-torch reference (float64) at the tolerances
of docs/architecture.md section 4. So the CUDA logic is tested in CI without a GPU; tests/test_gpu.py
runs the real kernels.
"""
import shutil

import numpy as np
import pytest
import torch

from ddfad_fast.ops import tables, gpu_gla, reference as ref
from ddfad_fast.config import FeatureConfig
from cuda_harness import build, fft_twiddles, ptr as _ptr, tables as _tables, top_db_arg
from stft_cases import CASES as STFT_CASES, params as stft_params, power_of_two_params
from tolerances import tol

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return build(tmp_path_factory.mktemp("harness"))


def _frames(lib, waves: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    B, L = waves.shape
    tab, t = _tables(cfg, L)
    frames = np.full((B * tab.n_frames, cfg.n_fft), np.nan, dtype=np.float32)
    lib.ddfad_frame_waves(_ptr(waves), _ptr(t["window"]), _ptr(frames), B, L, tab.n_frames, cfg.n_fft,
                          cfg.hop_length, cfg.preemphasis)
    return frames


def _fd_mfcc(lib, waves: np.ndarray, cfg: FeatureConfig, mel_tile: int, delta_tile: int, nth: int) -> np.ndarray:
    B, L = waves.shape
    tab, t = _tables(cfg, L)
    T = tab.n_frames
    spec = torch.fft.rfft(torch.from_numpy(_frames(lib, waves, cfg))).numpy().astype(np.complex64)
    db = np.full((B, T, cfg.n_mels), np.nan, dtype=np.float32)
    tile_max = np.full((B, -(-T // mel_tile)), np.nan, dtype=np.float32)
    out = np.full((B, 3, cfg.n_mfcc, T), np.nan, dtype=np.float32)
    lib.ddfad_mfcc_post(_ptr(spec), _ptr(t["bands"]), _ptr(t["weights"]), t["weights"].shape[1], _ptr(t["dct"]),
                        _ptr(t["start"]), _ptr(t["coef"]), _ptr(db), _ptr(tile_max), _ptr(out), B, T, cfg.n_freqs,
                        cfg.n_mels, cfg.n_mfcc, cfg.delta_width, cfg.amin, tab.ref_db, top_db_arg(cfg), 1, mel_tile,
                        delta_tile, nth)
    return out


@pytest.mark.parametrize("length,coef,window,n_fft", [(1001, 0.97, "hann", 256), (1, 0.97, "hann", 256),
                                                      (400, 0.0, "hamming", 256), (800, 0.97, "hann", 255),
                                                      (400, 0.97, "hamming", 201)])
def test_frame_value_matches_reference_framing(lib, length, coef, window, n_fft):
    cfg = FeatureConfig(fixed_length=length, preemphasis=coef, window=window, n_fft=n_fft)
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    got = _frames(lib, x, cfg)
    y = ref.preemphasis(torch.from_numpy(x).double(), coef).numpy()
    padded = np.pad(y, ((0, 0), (cfg.n_fft // 2, cfg.n_fft // 2)))
    T = cfg.n_frames(length)
    w = tables.window(window, cfg.win_length, cfg.n_fft)
    want = np.stack([padded[:, t * cfg.hop_length:t * cfg.hop_length + cfg.n_fft] * w for t in range(T)], axis=1)
    np.testing.assert_allclose(got, want.reshape(-1, cfg.n_fft), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("length,changes,mel_tile,delta_tile,nth", [
    (1203, {}, 4, 6, 5),                                           # several tiles per clip, odd thread count
    (300, {"top_db": None}, 16, 32, 3),                             # 4 frames: the short-clip delta rule
    (80 * 130 + 7, {}, 16, 32, 32),                                 # T = 131: halo rows across tiles
    (50, {}, 1, 1, 2),                                              # one frame
    (960, {}, 5, 12, 4),                                            # a tile starting at the last frame
    (4000, {"sample_rate": 16000, "n_fft": 512, "win_length": 320, "hop_length": 128, "n_mels": 48,
            "n_mfcc": 13, "delta_width": 5}, 7, 9, 16),
])
def test_mfcc_post_matches_reference(lib, length, changes, mel_tile, delta_tile, nth):
    cfg = FeatureConfig(fixed_length=length, **changes)
    waves = np.random.default_rng(length).standard_normal((3, length)).astype(np.float32)
    waves[1] *= 1e-4                                   # a quiet clip beside loud ones: per-clip top_db
    got = _fd_mfcc(lib, waves, cfg, mel_tile, delta_tile, nth)
    want = ref.fd_mfcc(torch.from_numpy(waves).double(), cfg).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))
    solo = _fd_mfcc(lib, waves[1:2], cfg, mel_tile, delta_tile, nth)
    np.testing.assert_array_equal(got[1], solo[0])


@pytest.mark.parametrize("case", stft_params())
def test_mfcc_post_every_geometry_matches_reference(lib, case):
    """Odd and even n_fft / hop / win_length at 8 to 44.1 kHz through framing, rfft and the two passes: the
    frame count and every table from dsp (the bindings' tables), none derived by the kernels."""
    cfg = case.config()
    waves = np.random.default_rng(case.length).standard_normal((2, case.length)).astype(np.float32)
    waves[1] *= 1e-4
    got = _fd_mfcc(lib, waves, cfg, 7, 9, 8)
    assert got.shape == (2, 3, cfg.n_mfcc, case.n_frames) and np.isfinite(got).all()
    want = ref.fd_mfcc(torch.from_numpy(waves).double(), cfg).numpy()
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))


def _fd_mfcc_fused(lib, waves: np.ndarray, cfg: FeatureConfig, tile: int, delta_tile: int, max_radix: int,
                   nth: int) -> np.ndarray:
    B, L = waves.shape
    tab, t = _tables(cfg, L)
    T = tab.n_frames
    db = np.full((B, T, cfg.n_mels), np.nan, dtype=np.float32)
    tile_max = np.full((B, -(-T // tile)), np.nan, dtype=np.float32)
    out = np.full((B, 3, cfg.n_mfcc, T), np.nan, dtype=np.float32)
    rc = lib.ddfad_fd_mfcc_fused(_ptr(np.ascontiguousarray(waves)), _ptr(t["window"]), _ptr(t["bands"]),
                                 _ptr(t["weights"]), t["weights"].shape[1], _ptr(t["dct"]), _ptr(t["start"]),
                                 _ptr(t["coef"]), _ptr(db), _ptr(tile_max), _ptr(out), B, L, T, cfg.n_fft,
                                 cfg.hop_length, cfg.n_mels, cfg.n_mfcc, cfg.delta_width, cfg.preemphasis, cfg.amin,
                                 tab.ref_db, top_db_arg(cfg), 1, tile, delta_tile, max_radix, nth)
    assert rc == 0
    return out


@pytest.mark.parametrize("length,changes,tile,delta_tile,max_radix,nth", [
    (1203, {}, 4, 6, 8, 64),                                                  # n_fft 256: 8 x 8 x 2
    (300, {"top_db": None, "preemphasis": 0.0}, 16, 32, 16, 64),
    (80 * 130 + 7, {}, 16, 32, 4, 64),
    (50, {}, 1, 1, 16, 16),
    (4000, {"sample_rate": 16000, "n_fft": 512, "win_length": 320, "hop_length": 128, "n_mels": 48,
            "n_mfcc": 13, "delta_width": 5, "window": "hamming"}, 7, 9, 16, 32),
])
def test_fd_mfcc_fused_matches_reference(lib, length, changes, tile, delta_tile, max_radix, nth):
    cfg = FeatureConfig(fixed_length=length, **changes)
    waves = np.random.default_rng(length + 1).standard_normal((3, length)).astype(np.float32)
    waves[1] *= 1e-4
    got = _fd_mfcc_fused(lib, waves, cfg, tile, delta_tile, max_radix, nth)
    want = ref.fd_mfcc(torch.from_numpy(waves).double(), cfg).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))
    solo = _fd_mfcc_fused(lib, waves[1:2], cfg, tile, delta_tile, max_radix, nth)
    np.testing.assert_array_equal(got[1], solo[0])


@pytest.mark.parametrize("case", power_of_two_params())
def test_fd_mfcc_fused_every_power_of_two_geometry(lib, case):
    cfg = case.config()
    waves = np.random.default_rng(case.length + 2).standard_normal((2, case.length)).astype(np.float32)
    waves[1] *= 1e-4
    got = _fd_mfcc_fused(lib, waves, cfg, 4, 8, 16, max(64, case.n_fft // 4))   # threads: a radix-2 pass's butterflies
    assert got.shape == (2, 3, cfg.n_mfcc, case.n_frames) and np.isfinite(got).all()
    want = ref.fd_mfcc(torch.from_numpy(waves).double(), cfg).numpy()
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))


def _gla_case(n_fft, hop, win_length, length, batch=2, seed=0, window="hann"):
    T = tables.n_frames(length, n_fft, hop)
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((batch, length))
    mag = ref.stft(torch.from_numpy(y), n_fft, hop, win_length, window).abs()                  # (B, F, T)
    phase = torch.polar(torch.ones_like(mag), torch.from_numpy(2 * np.pi * rng.random(mag.shape)))
    assert mag.shape[-1] == T
    return mag, phase


def _istft(x_btf: np.ndarray, n_fft, hop, win_length, length, window="hann") -> np.ndarray:
    return ref.istft(torch.from_numpy(x_btf).transpose(1, 2), n_fft, hop, win_length, window, length).numpy()


@pytest.mark.parametrize("n_fft,hop,win_length,window,length",
                         [(64, 16, 48, "hann", 1000)]
                         + [(c.n_fft, c.hop_length, c.win_length, c.window, c.short_length()) for c in STFT_CASES],
                         ids=["64-1000"] + [c.name for c in STFT_CASES])
def test_gla_step_and_overlap_add_loop_matches_reference(lib, n_fft, hop, win_length, window, length):
    """The cuFFT-path kernels (any n_fft, odd ones included), float64 at 1e-10 of the peak."""
    n_iter = 6
    mag, phase = _gla_case(n_fft, hop, win_length, length, window=window)
    B, F, T = mag.shape
    magnitude, x = gpu_gla.initial_state(mag, phase, n_fft)
    magnitude, x = magnitude.numpy(), x.numpy()
    win = tables.window(window, win_length, n_fft)
    inv_env = tables.inverse_envelope(window, win_length, n_fft, hop, T)
    prev = np.zeros_like(x)
    coef, eps = 0.99 / 1.99, np.finfo(np.float64).tiny
    for _ in range(n_iter):
        frames = np.ascontiguousarray(np.fft.irfft(x, n=n_fft))
        reframed = np.full_like(frames, np.nan)
        lib.ddfad_overlap_add_f64(_ptr(frames), _ptr(win), _ptr(inv_env), _ptr(reframed), B, T, n_fft, hop, length, 1)
        cur = np.ascontiguousarray(np.fft.rfft(reframed))
        lib.ddfad_gla_step_f64(_ptr(x), _ptr(cur), _ptr(prev), _ptr(magnitude), x.size, F, coef, eps)
        prev = cur
    frames = np.ascontiguousarray(np.fft.irfft(x, n=n_fft))
    out = np.full((B, length), np.nan)
    lib.ddfad_overlap_add_f64(_ptr(frames), _ptr(win), _ptr(inv_env), _ptr(out), B, T, n_fft, hop, length, 0)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, window, n_iter, 0.99, phase, length).numpy()
    np.testing.assert_allclose(out, want, **tol("griffin_lim", "float64", "any", np.abs(want).max()))


def _fused(lib, mag, phase, n_fft, hop, win_length, length, n_iter, tile, nth, dtype, max_radix=16):
    B, F, T = mag.shape
    magnitude, x = gpu_gla.initial_state(mag.to(dtype), phase.to(dtype.to_complex()), n_fft)
    np_real = np.float64 if dtype == torch.float64 else np.float32
    magnitude, x = magnitude.numpy(), x.numpy()
    consts = [np.ascontiguousarray(a, dtype=np_real) for a in (
        tables.window("hann", win_length, n_fft), tables.inverse_envelope("hann", win_length, n_fft, hop, T))]
    prev = np.zeros_like(x)
    nxt = np.full_like(x, np.nan)
    fn = lib.ddfad_gla_fused_f64 if dtype == torch.float64 else lib.ddfad_gla_fused_f32
    coef = 0.99 / 1.99
    for _ in range(n_iter):
        rc = fn(_ptr(x), _ptr(nxt), _ptr(prev), _ptr(magnitude), *map(_ptr, consts), B, T, n_fft, hop, length,
                coef, np.finfo(np_real).tiny, tile, max_radix, nth)
        assert rc == 0, "fewer harness threads than butterflies of one FFT pass"
        x, nxt = nxt, x
    return x, prev


@pytest.mark.parametrize("log2m", [1, 2, 3, 4, 5, 7, 8, 9])
@pytest.mark.parametrize("max_radix", [2, 4, 8, 16])
def test_stockham_fft_matches_numpy(lib, log2m, max_radix):
    m = 1 << log2m
    rng = np.random.default_rng(log2m * 31 + max_radix)
    data = rng.standard_normal((3, m)) + 1j * rng.standard_normal((3, m))
    twiddle = np.ascontiguousarray(fft_twiddles(2 * m))
    nth = max(1, m // 2) + 3                               # enough threads for any pass, not a power of two
    for inverse in (0, 1):
        buf = np.ascontiguousarray(data.copy())
        assert lib.ddfad_fft_f64(_ptr(buf), 3, log2m, _ptr(twiddle), inverse, max_radix, nth) == 0
        want = np.fft.ifft(data, axis=1) * m if inverse else np.fft.fft(data, axis=1)
        np.testing.assert_allclose(buf, want, atol=1e-11 * m)
    if m // 2 > 1:                                          # a radix-2 pass with too few threads is refused
        assert lib.ddfad_fft_f64(_ptr(np.ascontiguousarray(data.copy())), 3, log2m, _ptr(twiddle), 0, 2,
                                 m // 2 - 1) == -1


@pytest.mark.parametrize("n_fft,hop,win_length,length,tile,nth,max_radix", [
    (64, 16, 64, 2000, 4, 16, 16),       # 32-point FFT as 16 x 2
    (64, 16, 48, 2005, 3, 9, 8),         # length not a multiple of hop; tile not dividing T; 9 threads
    (64, 24, 64, 700, 2, 16, 2),         # hop not dividing n_fft: halo (n_fft - 1) // hop = 2; radix-2 passes
    (32, 12, 32, 30, 8, 3, 16),          # T = 3 < tile
    (128, 32, 100, 1000, 16, 16, 4),
    (256, 64, 200, 1500, 5, 64, 8),      # 128-point FFT as 8 x 8 x 2
    (16, 8, 16, 100, 1, 1, 16),
    (256, 80, 160, 2400, 4, 64, 4),      # the power-of-two geometries of tests/stft_cases.py
    (1024, 441, 882, 2205, 2, 256, 16),
])
def test_gla_fused_iteration_matches_reference_float64(lib, n_fft, hop, win_length, length, tile, nth, max_radix):
    n_iter = 4
    mag, phase = _gla_case(n_fft, hop, win_length, length, seed=n_fft + tile)
    x, prev = _fused(lib, mag, phase, n_fft, hop, win_length, length, n_iter, tile, nth, torch.float64, max_radix)
    assert np.isfinite(x).all() and np.isfinite(prev).all()
    got = _istft(x, n_fft, hop, win_length, length)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, "hann", n_iter, 0.99, phase, length).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1.0, np.abs(want).max()))


def test_gla_fused_iteration_float32_and_smem_formula(lib):
    n_fft, hop, win_length, length = 64, 16, 48, 2000
    mag, phase = _gla_case(n_fft, hop, win_length, length, seed=3)
    x, _ = _fused(lib, mag, phase, n_fft, hop, win_length, length, 8, 4, 16, torch.float32)
    got = _istft(x.astype(np.complex128), n_fft, hop, win_length, length)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, "hann", 8, 0.99, phase, length).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
    for args in [(512, 128, 8), (256, 80, 16), (64, 24, 1)]:
        assert lib.ddfad_gla_fused_smem_scalars(*args) * 4 == gpu_gla.fused_gla_smem_bytes(*args, 4)
