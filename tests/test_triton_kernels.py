"""Triton kernels vs librosa (the reference semantics), small shapes.

Without CUDA these run under TRITON_INTERPRET=1 on CPU tensors (set by conftest); on a GPU machine the
same tests run the compiled kernels on the device. tl.dot uses ieee fp32, so design-doc tolerances apply.
"""
import numpy as np
import pytest
import torch

pytest.importorskip("triton")
librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from ddfad_fast import gpu_backend as gb  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.errors import ParameterError  # noqa: E402
from ddfad_fast.kernels.fd_mfcc import frame_waves  # noqa: E402
from ddfad_fast.kernels.griffin_lim import overlap_add  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _librosa_fd_mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    y = librosa.effects.preemphasis(y, coef=cfg.preemphasis) if cfg.preemphasis else y
    power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                window=cfg.window, center=True, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
    db = librosa.power_to_db(mel, ref=cfg.ref, amin=cfg.amin, top_db=cfg.top_db)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc)
    return np.stack([mfcc, librosa.feature.delta(mfcc, width=cfg.delta_width, order=1),
                     librosa.feature.delta(mfcc, width=cfg.delta_width, order=2)])


def _triton_fd_mfcc(waves: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    x = torch.tensor(waves, dtype=torch.float32, device=DEVICE).contiguous()
    return gb.fd_mfcc_triton(x, cfg).cpu().numpy()


@pytest.mark.parametrize("length,coef,window", [(1001, 0.97, "hann"), (50, 0.97, "hamming"), (400, 0.0, "hann")])
def test_frame_waves_matches_librosa_framing(length, coef, window):
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length)).astype(np.float32)
    n_fft, hop, win_length = 64, 20, 48
    w = gb.window_vector(window, win_length, n_fft)
    got = frame_waves(torch.tensor(x, device=DEVICE), torch.tensor(w, dtype=torch.float32, device=DEVICE),
                      hop, coef).cpu().numpy()
    for b in range(2):
        y = librosa.effects.preemphasis(x[b], coef=coef) if coef else x[b]
        padded = np.pad(y, n_fft // 2)
        T = 1 + length // hop
        want = np.stack([padded[t * hop:t * hop + n_fft] for t in range(T)]) * w
        np.testing.assert_allclose(got[b * T:(b + 1) * T], want, atol=1e-6, rtol=1e-5)


def test_feature_constants_match_librosa():
    cfg = FeatureConfig()
    np.testing.assert_allclose(gb.mel_matrix(cfg), librosa.filters.mel(sr=8000, n_fft=256, n_mels=40,
                                                                       dtype=np.float64), atol=1e-12)
    w = librosa.util.pad_center(librosa.filters.get_window("hamming", 160, fftbins=True), size=256)
    np.testing.assert_allclose(gb.window_vector("hamming", 160, 256), w, atol=1e-12)
    rng = np.random.default_rng(3)
    for T in (9, 10, 23):
        x = rng.standard_normal((4, T))
        for order in (1, 2):
            want = librosa.feature.delta(x, width=9, order=order)
            np.testing.assert_allclose(x @ gb.delta_matrix(T, 9, order).T, want, atol=1e-10)


def test_delta_matrix_short_clip_rule_is_edge_padding():
    rng = np.random.default_rng(4)
    for T in (1, 4, 8):
        x = rng.standard_normal((3, T))
        left = (9 - T) // 2
        padded = np.pad(x, ((0, 0), (left, 9 - T - left)), mode="edge")
        for order in (1, 2):
            want = librosa.feature.delta(padded, width=9, order=order)[:, left:left + T]
            np.testing.assert_allclose(x @ gb.delta_matrix(T, 9, order).T, want, atol=1e-10)


def test_fd_mfcc_random_matches_librosa_per_clip():
    cfg = FeatureConfig(fixed_length=1203)
    rng = np.random.default_rng(11)
    waves = rng.standard_normal((2, 1203)).astype(np.float32)
    waves[1] *= 1e-4                                      # quiet clip beside a loud one: per-clip top_db
    got = _triton_fd_mfcc(waves, cfg)
    assert got.shape == (2, 3, 20, 16)
    for b in range(2):
        want = _librosa_fd_mfcc(waves[b], cfg)
        np.testing.assert_allclose(got[b, 0], want[0], atol=5e-4, rtol=1e-5)
        np.testing.assert_allclose(got[b, 1:], want[1:], atol=1e-4)
    solo = _triton_fd_mfcc(waves[1:], cfg)
    np.testing.assert_array_equal(got[1], solo[0])


def test_fd_mfcc_fsdd_clips_speech16k_shapes(fsdd_files):
    cfg = FeatureConfig(fixed_length=2000)
    clips = [sf.read(str(p), dtype="float32")[0] for p in fsdd_files[:2]]
    waves = np.stack([np.pad(c, (0, max(0, 2000 - len(c))))[:2000] for c in clips])
    got = _triton_fd_mfcc(waves, cfg)
    for b in range(len(clips)):
        want = _librosa_fd_mfcc(waves[b], cfg)
        np.testing.assert_allclose(got[b, 0], want[0], atol=5e-4, rtol=1e-5)
        np.testing.assert_allclose(got[b, 1:], want[1:], atol=1e-4)


def test_fd_mfcc_short_clip_uses_edge_rule():
    cfg = FeatureConfig(fixed_length=300, top_db=None)    # 4 frames: fewer than delta_width
    wave = np.random.default_rng(5).standard_normal((1, 300)).astype(np.float32)
    got = _triton_fd_mfcc(wave, cfg)
    y = librosa.effects.preemphasis(wave[0], coef=0.97)
    power = np.abs(librosa.stft(y, n_fft=256, hop_length=80, win_length=160, pad_mode="constant")) ** 2
    db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=8000, n_mels=40), top_db=None)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=20)
    np.testing.assert_allclose(got[0, 0], mfcc, atol=5e-4, rtol=1e-5)
    np.testing.assert_allclose(got[0, 1], mfcc @ gb.delta_matrix(4, 9, 1).T, atol=1e-4)


def test_overlap_add_matches_librosa_istft():
    rng = np.random.default_rng(6)
    y = rng.standard_normal(1000)
    spec = librosa.stft(y, n_fft=64, hop_length=16, win_length=48, center=True, pad_mode="constant")
    frames = torch.fft.irfft(torch.tensor(spec.T[None], device=DEVICE), n=64).contiguous()
    win, inv_env = gb.gla_constants(64, 16, 48, "hann", spec.shape[1], torch.float64, torch.device(DEVICE))
    for length in (1000, 1003):
        got = overlap_add(frames, win, inv_env, 16, length, reframe=False).cpu().numpy()[0]
        want = librosa.istft(spec, hop_length=16, win_length=48, n_fft=64, length=length)
        np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 5e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("win_length,length", [(64, None), (48, 2005)])
def test_griffin_lim_matches_librosa(dtype, atol, win_length, length):
    y = np.random.default_rng(7).standard_normal(2000)
    S = np.abs(librosa.stft(y, n_fft=64, hop_length=16, win_length=win_length, center=True, pad_mode="constant"))
    phase = np.exp(2j * np.pi * np.random.default_rng(8).random(S.shape))
    want = librosa.griffinlim(S, n_iter=8, hop_length=16, win_length=win_length, n_fft=64, momentum=0.99,
                              init="random", random_state=np.random.default_rng(8), length=length)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    got = gb._griffin_lim("triton", torch.tensor(S[None], dtype=dtype, device=DEVICE), 64, 16, win_length, "hann",
                          8, 0.99, torch.tensor(phase[None], dtype=cdtype, device=DEVICE), length, None)
    assert got.dtype == dtype and got.shape == (1, len(want))
    np.testing.assert_allclose(got[0].cpu().numpy(), want, atol=atol * max(1.0, np.abs(want).max()))


def test_griffin_lim_random_init_follows_generator_and_checks_length():
    S = torch.rand(1, 33, 20, dtype=torch.float32, device=DEVICE)
    runs = [gb.griffin_lim_triton(S, 64, 16, 64, "hann", 2, 0.99,
                                  generator=torch.Generator(DEVICE).manual_seed(9)) for _ in range(2)]
    other = gb.griffin_lim_triton(S, 64, 16, 64, "hann", 2, 0.99, generator=torch.Generator(DEVICE).manual_seed(10))
    assert runs[0].shape == (1, 16 * 19)
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.equal(runs[0], other)
    with pytest.raises(ParameterError, match="length=100"):
        gb.griffin_lim_triton(S, 64, 16, 64, "hann", 2, 0.99, length=100)


def test_fd_mfcc_rejects_clips_longer_than_one_program():
    cfg = FeatureConfig(fixed_length=None)
    waves = torch.zeros(1, 80 * gb.MAX_TRITON_FRAMES, device=DEVICE)
    with pytest.raises(ParameterError, match="frames per clip"):
        gb.fd_mfcc_triton(waves, cfg)
