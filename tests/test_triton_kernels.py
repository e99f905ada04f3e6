"""Triton kernels vs the plain-torch reference (float64) and librosa, small shapes.

Without CUDA these run under TRITON_INTERPRET=1 on CPU tensors (set by conftest); on a GPU machine the
same tests run the compiled kernels on the device. tl.dot uses ieee fp32, so the tolerances of
docs/architecture.md section 4 apply. The oracle is ddfad_fast.ops.reference (itself tested against librosa
in test_core / test_features); tests marked with the ``librosa`` fixture also compare with librosa directly and skip without it.
"""
import math

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from ddfad_fast.ops import tables, gpu as gb, gpu_features, gpu_gla, reference as ref  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.errors import ParameterError  # noqa: E402
from ddfad_fast.kernels.fd_mfcc import MEL_GROUP, OUT_TILE, frame_waves  # noqa: E402
from ddfad_fast.kernels.griffin_lim import gla_step, gla_step_pairs, overlap_add, overlap_add_pairs, pack_pairs
from stft_cases import CASES as STFT_CASES, params as stft_params, well_conditioned  # noqa: E402
from tolerances import tol  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def librosa():
    return pytest.importorskip("librosa")


def _triton_fd_mfcc(waves: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    x = torch.tensor(waves, dtype=torch.float32, device=DEVICE).contiguous()
    out = gb.fd_mfcc_triton(x, cfg).cpu().numpy()
    assert np.isfinite(out).all()
    return out


def _check_fd_mfcc(got: np.ndarray, want: np.ndarray) -> None:
    """The mfcc and deltas rows of tests/tolerances.py: MFCC max abs 5e-4 (rtol 1e-5), deltas max abs 1e-4 on
    every frame."""
    np.testing.assert_allclose(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], **tol("deltas", "float32"))


def _reference_fd_mfcc(waves: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return ref.fd_mfcc(torch.from_numpy(np.asarray(waves, dtype=np.float64)), cfg).numpy()


# ---- constants shared by the Triton and CUDA kernels ----------------------------------------------
def test_mel_groups_are_the_kernels():
    """The mel pass dots groups of MEL_GROUP bands over each group's bins (tables.mel_groups, tested in test_features)."""
    assert gpu_features.MEL_GROUP == MEL_GROUP
    tensors = gpu_features.feature_plan(FeatureConfig(), 8000, torch.device(DEVICE))
    want = tables.mel_groups(8000, 256, 40, 0.0, 4000.0, MEL_GROUP)
    np.testing.assert_array_equal(tensors.groups.cpu().numpy(), want)
    assert tensors.n_frames == 101 and tensors.delta_coef.shape == (2, 9, 101)


@pytest.mark.parametrize("case", stft_params())
def test_fake_kernel_gives_the_dsp_frame_count(case):
    """The shapes torch.compile sees (the fake kernel of ddfad::fd_mfcc_gpu, with and without deltas) are the
    kernels' and the reference's."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = case.config()
    fields = [getattr(cfg, name) for name in gpu_features.CONFIG_FIELDS]
    with FakeTensorMode():
        waves = torch.empty(2, case.length)
        out = torch.ops.ddfad.fd_mfcc_gpu(waves, "triton", True, *fields)
        mfcc = torch.ops.ddfad.fd_mfcc_gpu(waves, "triton", False, *fields)
    assert tuple(out.shape) == (2, 3, cfg.n_mfcc, case.n_frames)
    assert tuple(mfcc.shape) == (2, cfg.n_mfcc, case.n_frames)


# ---- framing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,coef,window,n_fft", [(1001, 0.97, "hann", 64), (50, 0.97, "hamming", 64),
                                                      (400, 0.0, "hann", 64), (1, 0.97, "hann", 64),
                                                      (1000, 0.97, "hann", 63), (60, 0.97, "hamming", 63)])
def test_frame_waves_matches_reference_framing(length, coef, window, n_fft):
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length)).astype(np.float32)
    hop, win_length = 20, 47
    w = tables.window(window, win_length, n_fft)
    T = tables.n_frames(length, n_fft, hop)
    got = frame_waves(torch.tensor(x, device=DEVICE), torch.tensor(w, dtype=torch.float32, device=DEVICE),
                      T, hop, coef).cpu().numpy()
    y = ref.preemphasis(torch.from_numpy(x).double(), coef).numpy()
    for b in range(2):
        padded = np.pad(y[b], n_fft // 2)
        want = np.stack([padded[t * hop:t * hop + n_fft] for t in range(T)]) * w
        np.testing.assert_allclose(got[b * T:(b + 1) * T], want, atol=1e-6, rtol=1e-5)


# ---- fd_mfcc ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,changes", [
    (1203, {}),                                        # 16 frames
    (8000, {}),                                        # the FSDD preset, 101 frames: two output tiles
    (300, {"top_db": None}),                           # 4 frames: fewer than delta_width
    (50, {}),                                          # shorter than one hop: 1 frame
    (4000, {"sample_rate": 16000, "n_fft": 512, "win_length": 320, "hop_length": 128}),
    (2000, {"n_mels": 48, "n_mfcc": 13, "delta_width": 5, "window": "hamming", "preemphasis": 0.0}),
])
def test_fd_mfcc_matches_reference(length, changes):
    cfg = FeatureConfig(fixed_length=length, **changes)
    rng = np.random.default_rng(length)
    waves = rng.standard_normal((3, length)).astype(np.float32)
    waves[1] *= 1e-4                                   # a quiet clip beside loud ones
    got = _triton_fd_mfcc(waves, cfg)
    assert got.shape == (3, 3, cfg.n_mfcc, cfg.n_frames(length))
    _check_fd_mfcc(got, _reference_fd_mfcc(waves, cfg))


@pytest.mark.parametrize("case", stft_params())
def test_fd_mfcc_every_geometry_matches_reference(case):
    """Odd and even n_fft / hop / win_length at 8 to 44.1 kHz: frames and tables from dsp, none derived here."""
    cfg = case.config()
    waves = np.random.default_rng(case.length).standard_normal((2, case.length)).astype(np.float32)
    waves[1] *= 1e-4
    got = _triton_fd_mfcc(waves, cfg)
    assert got.shape == (2, 3, cfg.n_mfcc, case.n_frames)
    _check_fd_mfcc(got, _reference_fd_mfcc(waves, cfg))


def test_mfcc_is_the_first_channel_and_matches_the_reference():
    """The GPU backends of ``mfcc`` (registered so that mfcc on CUDA never runs plain torch by default)."""
    cfg = FeatureConfig(fixed_length=1203)
    waves = np.random.default_rng(13).standard_normal((2, 1203)).astype(np.float32)
    x = torch.tensor(waves, device=DEVICE)
    got = gb.mfcc_triton(x, cfg).cpu().numpy()
    assert got.shape == (2, cfg.n_mfcc, cfg.n_frames(1203)) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, _triton_fd_mfcc(waves, cfg)[:, 0])
    want = ref.mfcc(torch.from_numpy(waves.astype(np.float64)), cfg).numpy()
    np.testing.assert_allclose(got, want, **tol("mfcc", "float32"))


def test_fd_mfcc_per_clip_top_db_equals_solo_result():
    cfg = FeatureConfig(fixed_length=1203)
    waves = np.random.default_rng(11).standard_normal((2, 1203)).astype(np.float32)
    waves[1] *= 1e-5
    got = _triton_fd_mfcc(waves, cfg)
    solo = _triton_fd_mfcc(waves[1:], cfg)
    np.testing.assert_array_equal(got[1], solo[0])


def test_fd_mfcc_long_clip_spans_many_tiles():
    """More frames than one program holds: tiles in time, deltas reading across tile borders."""
    cfg = FeatureConfig(fixed_length=None)
    length = 80 * (5 * OUT_TILE + 3) + 17
    waves = np.random.default_rng(12).standard_normal((1, length)).astype(np.float32)
    waves[0, : length // 2] *= 1e-3                   # the clip's peak lies in a late tile
    got = _triton_fd_mfcc(waves, cfg)
    assert got.shape[-1] == 5 * OUT_TILE + 4
    _check_fd_mfcc(got, _reference_fd_mfcc(waves, cfg))


def test_fd_mfcc_random_matches_librosa_per_clip(librosa):
    cfg = FeatureConfig(fixed_length=1203)
    waves = np.random.default_rng(13).standard_normal((2, 1203)).astype(np.float32)
    waves[1] *= 1e-4
    got = _triton_fd_mfcc(waves, cfg)
    for b in range(2):
        y = librosa.effects.preemphasis(waves[b], coef=cfg.preemphasis)
        power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                    window=cfg.window, center=True, pad_mode="constant")) ** 2
        mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=cfg.top_db), n_mfcc=cfg.n_mfcc)
        want = np.stack([mfcc, librosa.feature.delta(mfcc, width=9, order=1),
                         librosa.feature.delta(mfcc, width=9, order=2)])
        _check_fd_mfcc(got[b:b + 1], want[None])


def test_fd_mfcc_fsdd_clips(fsdd_files):
    sf = pytest.importorskip("soundfile")
    cfg = FeatureConfig()
    clips = [sf.read(str(p), dtype="float32")[0] for p in fsdd_files[:3]]
    waves = np.stack([np.pad(c, (0, max(0, 8000 - len(c))))[:8000] for c in clips])
    _check_fd_mfcc(_triton_fd_mfcc(waves, cfg), _reference_fd_mfcc(waves, cfg))


def test_fd_mfcc_rejects_float64_and_wrong_rank():
    cfg = FeatureConfig(fixed_length=None)
    with pytest.raises(ParameterError, match="float32"):
        gb.fd_mfcc_triton(torch.zeros(1, 400, dtype=torch.float64, device=DEVICE), cfg)
    with pytest.raises(ParameterError, match="float32"):
        gb.fd_mfcc_triton(torch.zeros(400, device=DEVICE), cfg)


# ---- Griffin-Lim -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_fft", [64, 63])
def test_gla_step_kernel(n_fft):
    F = n_fft // 2 + 1
    g = torch.Generator().manual_seed(n_fft)
    cur = torch.randn(2, 5, F, dtype=torch.complex128, generator=g)
    prev = torch.randn(2, 5, F, dtype=torch.complex128, generator=g)
    cur[0, 0, 3] = prev[0, 0, 3] = 0                  # a = 0 exactly, with or without FMA: the eps guard
    mag = torch.rand(2, 5, F, dtype=torch.float64, generator=g)
    coef, eps = 0.99 / 1.99, torch.finfo(torch.float64).tiny
    params = torch.tensor([coef, eps], dtype=torch.float64)
    x = torch.full_like(cur, float("nan"))
    args = [t.to(DEVICE) for t in (x, cur, prev, mag, params)]
    gla_step(*args[:4], args[4], n_fft)
    a = cur - coef * prev
    want = mag * a / (a.abs() + eps)
    want[..., 0] = want[..., 0].real
    if n_fft % 2 == 0:
        want[..., -1] = want[..., -1].real
    torch.testing.assert_close(args[0].cpu(), want, atol=1e-14, rtol=1e-12)


@pytest.mark.parametrize("n_fft,frames", [(64, 7), (63, 6)])
def test_gla_step_pairs_kernel(n_fft, frames):
    """Two real frames per complex FFT: unpack, step, pack equals the per-frame step (odd frame count too)."""
    F = n_fft // 2 + 1
    g = torch.Generator().manual_seed(n_fft + frames)
    P = (frames + 1) // 2
    reals = torch.randn(2, 2 * P, n_fft, dtype=torch.float64, generator=g)    # rebuilt and previous frames
    if frames % 2:
        reals[:, -1] = 0                                      # the missing frame of an odd count is zero
    w, w_prev = (torch.fft.fft(torch.complex(r[0::2], r[1::2])) for r in reals)
    mag = torch.rand(frames, F, dtype=torch.float64, generator=g)
    coef, eps = 0.99 / 1.99, torch.finfo(torch.float64).tiny
    params = torch.tensor([coef, eps], dtype=torch.float64)
    z = torch.full((P, n_fft), float("nan"), dtype=torch.complex128)
    args = [t.to(DEVICE) for t in (z, w, w_prev, mag, params)]
    gla_step_pairs(*args)
    a = torch.fft.rfft(reals[0]) - coef * torch.fft.rfft(reals[1])             # per-frame spectra
    x = torch.zeros(2 * P, F, dtype=torch.complex128)
    x[:frames] = mag * a[:frames] / (a[:frames].abs() + eps)
    x[:, 0] = x[:, 0].real
    if n_fft % 2 == 0:
        x[:, -1] = x[:, -1].real
    packed = pack_pairs(x[:frames].to(DEVICE), n_fft).cpu()
    torch.testing.assert_close(args[0].cpu(), packed, atol=1e-12, rtol=1e-10)
    unpacked = torch.fft.ifft(args[0].cpu())                                   # = irfft of each frame
    torch.testing.assert_close(unpacked.real, torch.fft.irfft(x[0::2], n=n_fft), atol=1e-12, rtol=0)
    torch.testing.assert_close(unpacked.imag, torch.fft.irfft(x[1::2], n=n_fft), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_fft,frames", [(64, 6), (63, 7), (8, 1)])
def test_pack_pairs_is_the_fft_of_paired_frames(n_fft, frames):
    """pack_pairs(rfft of real frames) = fft(frame 2p + i frame 2p+1), with a zero frame after an odd count."""
    g = torch.Generator().manual_seed(n_fft + frames)
    reals = torch.randn(frames + frames % 2, n_fft, dtype=torch.float64, generator=g)
    reals[frames:] = 0
    want = torch.fft.fft(torch.complex(reals[0::2], reals[1::2]))
    got = pack_pairs(torch.fft.rfft(reals[:frames]).to(DEVICE), n_fft).cpu()
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_overlap_add_pairs_matches_per_frame():
    n_fft, hop, win_length, B, length = 64, 16, 48, 3, 200                    # B*T = 39 frames: odd
    T = tables.n_frames(length, n_fft, hop)
    g = torch.Generator().manual_seed(4)
    frames = torch.randn(B, T, n_fft, dtype=torch.float64, generator=g)
    flat = torch.cat([frames.reshape(B * T, n_fft), torch.zeros(1, n_fft, dtype=torch.float64)])
    pairs = torch.complex(flat[0::2], flat[1::2]).contiguous()
    win, inv_env = gpu_gla.gla_tensors(n_fft, hop, win_length, "hann", T, torch.float64, torch.device(DEVICE))
    signal = overlap_add_pairs(pairs.to(DEVICE), win, inv_env, B, T, hop, length,
                               torch.empty(B, length, dtype=torch.float64, device=DEVICE), reframe=False)
    torch.testing.assert_close(signal.cpu(), overlap_add(frames.to(DEVICE), win, inv_env, hop, length, False).cpu(),
                               atol=1e-13, rtol=0)
    out = torch.zeros_like(pairs).to(DEVICE)
    overlap_add_pairs(pairs.to(DEVICE), win, inv_env, B, T, hop, length, out, reframe=True)
    want = overlap_add(frames.to(DEVICE), win, inv_env, hop, length, True).cpu().reshape(B * T, n_fft)
    got = torch.view_as_real(out.cpu()).permute(0, 2, 1).reshape(-1, n_fft)[:B * T]
    torch.testing.assert_close(got, want, atol=1e-13, rtol=0)
    assert not out.imag[-1].cpu().any()                                          # the missing frame stays zero


def test_overlap_add_matches_reference_istft_and_stft_framing():
    n_fft, hop, win_length = 64, 16, 48
    rng = np.random.default_rng(6)
    y = torch.from_numpy(rng.standard_normal((2, 1000)))
    spec = ref.stft(y, n_fft, hop, win_length, "hann")                        # (B, F, T)
    T = spec.shape[-1]
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft, norm="forward").contiguous().to(DEVICE)
    win, inv_env = gpu_gla.gla_tensors(n_fft, hop, win_length, "hann", T, torch.float64, torch.device(DEVICE),
                                  unscaled=True)
    for length in (1000, 1003, 990):
        got = overlap_add(frames, win, inv_env, hop, length, reframe=False).cpu()
        want = ref.istft(spec, n_fft, hop, win_length, "hann", length)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
        if tables.n_frames(length, n_fft, hop) != T:
            continue
        reframed = overlap_add(frames, win, inv_env, hop, length, reframe=True).cpu()
        rebuilt = torch.fft.rfft(reframed)
        torch.testing.assert_close(rebuilt.transpose(1, 2), ref.stft(want, n_fft, hop, win_length, "hann"),
                                   atol=1e-10, rtol=0)


def _gla_case(n_fft, hop, win_length, length, seed, batch=2, window="hann"):
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(rng.standard_normal((batch, length)))
    mag = ref.stft(y, n_fft, hop, win_length, window).abs()
    phase = torch.polar(torch.ones_like(mag), torch.from_numpy(2 * np.pi * rng.random(mag.shape)))
    return mag, phase


# float64 is float64 arithmetic end to end: 1e-10 of the peak against the float64 reference (same phases and
# iterations) catches a float32 operation inside the path, which costs ~1e-6 (tests/tolerances.py)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("n_fft,hop,win_length,window,length,batch",
                         [(64, 16, 64, "hann", 2000, 2), (64, 16, 48, "hann", 2005, 2), (63, 20, 40, "hann", 1001, 2),
                          (64, 16, 64, "hann", 2016, 1)]
                         + [(c.n_fft, c.hop_length, c.win_length, c.window, c.short_length(), 1) for c in STFT_CASES],
                         ids=["64-2000", "64-2005", "63-1001", "64-2016-B1"] + [c.name for c in STFT_CASES])
def test_griffin_lim_matches_reference(dtype, n_fft, hop, win_length, window, length, batch):
    """Includes odd n_fft and an odd number of frames (the last pair has one frame)."""
    mag, phase = _gla_case(n_fft, hop, win_length, length, seed=n_fft + length, batch=batch, window=window)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, window, 8, 0.99, phase, length)
    got = gb.griffin_lim_triton(mag.to(dtype).to(DEVICE), n_fft, hop, win_length, window, 8, 0.99,
                                phase.to(dtype.to_complex()).to(DEVICE), length).cpu().double()
    assert got.shape == (batch, length)
    if dtype == torch.float32:
        assert torch.isfinite(got).all()
        keep = torch.from_numpy(well_conditioned(n_fft, hop, win_length, window, length))
        got, want = got[:, keep], want[:, keep]
    torch.testing.assert_close(got, want, **tol("griffin_lim", dtype, "any", want.abs().max().item()))


def test_griffin_lim_matches_librosa_float64(librosa):
    y = np.random.default_rng(7).standard_normal(2000)
    S = np.abs(librosa.stft(y, n_fft=64, hop_length=16, win_length=48, center=True, pad_mode="constant"))
    phase = np.exp(2j * np.pi * np.random.default_rng(8).random(S.shape))
    want = librosa.griffinlim(S, n_iter=8, hop_length=16, win_length=48, n_fft=64, momentum=0.99,
                              init="random", random_state=np.random.default_rng(8), length=2005)
    got = gb.griffin_lim_triton(torch.tensor(S[None], device=DEVICE), 64, 16, 48, "hann", 8, 0.99,
                                torch.tensor(phase[None], device=DEVICE), 2005)
    # librosa computes in float64 too (it agrees with the reference to ~1e-11 of the peak)
    np.testing.assert_allclose(got[0].cpu().numpy(), want, **tol("griffin_lim", "float64", "any", np.abs(want).max()))


def test_griffin_lim_zero_iterations_is_istft_of_initial_estimate():
    mag, phase = _gla_case(64, 16, 64, 500, seed=3)
    got = gb.griffin_lim_triton(mag.to(DEVICE), 64, 16, 64, "hann", 0, 0.99, phase.to(DEVICE), 500).cpu()
    torch.testing.assert_close(got, ref.griffin_lim(mag, 64, 16, 64, "hann", 0, 0.99, phase, 500),
                               atol=1e-12, rtol=0)


def test_griffin_lim_checks_shapes():
    S = torch.rand(1, 33, 20, device=DEVICE)
    phase = torch.polar(torch.ones_like(S), 2 * math.pi * torch.rand_like(S))
    with pytest.raises(ParameterError, match="length=100"):
        gb.griffin_lim_triton(S, 64, 16, 64, "hann", 2, 0.99, phase, 100)
    with pytest.raises(ParameterError, match="frequency bins"):
        gb.griffin_lim_triton(S, 128, 16, 64, "hann", 2, 0.99, phase, 16 * 19)
    with pytest.raises(ParameterError, match="init_phase"):
        gb.griffin_lim_triton(S, 64, 16, 64, "hann", 2, 0.99, phase[..., :3], 16 * 19)
