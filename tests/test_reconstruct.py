"""Reconstruction: inverse DCT, NNLS mel inversion, Griffin-Lim (reference backend) vs librosa, FD-MFCC -> audio."""
import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from ddfad_fast import FeatureConfig, ParameterError, fd_mfcc, fd_mfcc_to_audio, griffin_lim, log_spectral_distance, mel_to_magnitude, mfcc_to_mel, spectral_convergence
from ddfad_fast.ops import tables, reference  # noqa: E402
from ddfad_fast.ops.features import fit_length  # noqa: E402
from tolerances import tol  # noqa: E402


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    monkeypatch.setenv("DDFAD_BACKEND", "reference")


def magnitude_of(y: np.ndarray, n_fft: int, hop: int, win_length: int) -> np.ndarray:
    return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win_length, center=True,
                               pad_mode="constant"))


def fsdd_waves(files, length, dtype=torch.float64) -> torch.Tensor:
    return torch.stack([fit_length(torch.from_numpy(sf.read(str(p), dtype="float64")[0]), length) for p in files]).to(dtype)


@pytest.mark.parametrize("n_fft,hop,win_length,length,momentum", [
    (64, 16, 64, None, 0.99), (64, 16, 48, 2005, 0.99), (256, 80, 160, 4000, 0.0), (255, 50, 200, None, 0.5)])
def test_griffin_lim_fixed_phase_matches_librosa(rng, n_fft, hop, win_length, length, momentum):
    y = rng.standard_normal(2000 if length == 2005 else 4000)
    S = magnitude_of(y, n_fft, hop, win_length)
    phase_rng = np.random.default_rng(8)
    phase = np.exp(2j * np.pi * phase_rng.random(S.shape))
    want = librosa.griffinlim(S, n_iter=8, hop_length=hop, win_length=win_length, n_fft=n_fft, momentum=momentum,
                              init="random", random_state=np.random.default_rng(8), length=length)
    got = griffin_lim(torch.from_numpy(S), n_fft, hop, win_length, n_iter=8, momentum=momentum,
                      init_phase=torch.from_numpy(phase), length=length)
    assert got.shape == (1, want.size) and got.dtype == torch.float64
    # float64 throughout, like librosa: 1e-10 of the peak catches float32 arithmetic inside the path
    np.testing.assert_allclose(got[0].numpy(), want, **tol("griffin_lim", "float64", "any", np.abs(want).max()))


def test_griffin_lim_random_phase_convergence_matches_librosa(fsdd_dir):
    """Mean spectral convergence after 32 iterations over 64 clips within 0.3 dB of librosa's."""
    files = sorted(fsdd_dir.glob("*.wav"))[::47][:64]
    waves = fsdd_waves(files, 4000)
    S = reference.stft(waves, 256, 80, 160, "hann").abs()
    ours = griffin_lim(S, 256, 80, 160, n_iter=32, length=4000, generator=torch.Generator().manual_seed(0))
    sc_ours = spectral_convergence(S, ours, 256, 80, 160)
    rng = np.random.default_rng(0)
    sc_librosa = torch.stack([spectral_convergence(S[i], torch.from_numpy(librosa.griffinlim(
        S[i].numpy(), n_iter=32, hop_length=80, win_length=160, n_fft=256, length=4000, random_state=rng)),
        256, 80, 160)[0] for i in range(len(files))])
    assert abs(float(sc_ours.mean() - sc_librosa.mean())) <= 0.3, (float(sc_ours.mean()), float(sc_librosa.mean()))
    assert float(sc_ours.mean()) < -15.0


def test_griffin_lim_seeding_and_float32(rng):
    S = torch.from_numpy(magnitude_of(rng.standard_normal(2000), 64, 16, 64)).float()
    a = griffin_lim(S, 64, 16, generator=torch.Generator().manual_seed(1))
    b = griffin_lim(S, 64, 16, generator=torch.Generator().manual_seed(1))
    c = griffin_lim(S, 64, 16, generator=torch.Generator().manual_seed(2))
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_fft=128), "frequency bins"),
    (dict(length=10), "length=10"),
    (dict(magnitude=-torch.ones(1, 33, 5)), "non-negative"),
    (dict(magnitude=torch.full((33, 5), float("nan"))), "non-finite"),
    (dict(init_phase=torch.ones(1, 33, 4, dtype=torch.complex64)), "init_phase has shape"),
    (dict(magnitude=torch.ones(1, 1, 33, 5)), "dimensions"),
    (dict(win_length=100), "win_length"),
])
def test_griffin_lim_bad_input(kwargs, match):
    args = dict(magnitude=torch.ones(1, 33, 5), n_fft=64, hop_length=16) | kwargs
    with pytest.raises(ParameterError, match=match):
        griffin_lim(**args)


def test_mfcc_to_mel_inverts_the_dct_and_db():
    cfg = FeatureConfig(n_mfcc=40, top_db=None)
    mel = torch.rand(2, 40, 11, dtype=torch.float64) + 1e-3
    log_mel = 10 * torch.log10(mel)
    mfcc = torch.from_numpy(tables.dct_matrix(40, 40)) @ log_mel
    torch.testing.assert_close(mfcc_to_mel(mfcc, cfg), mel, **tol("mfcc_to_mel", "float64", "reference"))
    # fewer coefficients: the missing ones are zero, which low-passes the log-mel spectrum
    smooth = mfcc_to_mel(mfcc[:, :20], cfg)
    assert smooth.shape == mel.shape and bool((smooth > 0).all())


def test_mel_to_magnitude_residual_no_worse_than_librosa(fsdd_files):
    waves = fsdd_waves(fsdd_files[:4], 8000)
    power = reference.stft(reference.preemphasis(waves, 0.97), 256, 80, 160, "hann").abs().square()
    bank = tables.mel_filterbank(8000, 256, 40, 0.0, 4000.0)
    mel = torch.from_numpy(bank) @ power
    noisy = mel * torch.exp(0.3 * torch.randn(mel.shape, generator=torch.Generator().manual_seed(0), dtype=mel.dtype))
    for target in (mel, noisy):   # exactly representable, and perturbed (not representable)
        ours = mel_to_magnitude(target, FeatureConfig())
        assert ours.shape == (4, 129, 101) and bool((ours >= 0).all())
        for b in range(4):
            lib = librosa.feature.inverse.mel_to_stft(target[b].numpy(), sr=8000, n_fft=256, power=2.0)
            res_lib = np.linalg.norm(bank @ lib ** 2 - target[b].numpy())
            res_ours = np.linalg.norm(bank @ ours[b].numpy() ** 2 - target[b].numpy())
            assert res_ours <= res_lib * 1.0001 + 1e-12, (b, res_ours, res_lib)


def test_fd_mfcc_to_audio_round_trip(fsdd_files):
    cfg = FeatureConfig()
    waves = fsdd_waves(fsdd_files[:3], 8000, torch.float32)
    feats = fd_mfcc(waves, 8000, cfg)
    audio = fd_mfcc_to_audio(feats, 8000, cfg, n_iter=32)
    assert audio.shape == (3, 8000) and audio.dtype == torch.float32 and bool(torch.isfinite(audio).all())
    torch.testing.assert_close(fd_mfcc_to_audio(feats, 8000, cfg, n_iter=32), audio, rtol=0, atol=0)
    # the audio's own features are close to the features it was made from (20 of 40 cepstra kept)
    again = fd_mfcc(audio, 8000, cfg)
    err = (again[:, 0] - feats[:, 0]).abs().mean() / feats[:, 0].abs().mean()
    assert err < 0.25, float(err)
    # Griffin-Lim against the magnitude it was given: spectral convergence clearly below 0 dB
    magnitude = mel_to_magnitude(mfcc_to_mel(feats[:, 0], cfg), cfg)
    pre = reference.preemphasis(audio, 0.97)
    assert float(spectral_convergence(magnitude, pre, 256, 80, 160).max()) < -5.0


def test_fd_mfcc_to_audio_takes_the_iterations_of_its_config(fsdd_files):
    """ReconstructConfig.n_iter is the default; an explicit n_iter overrides it."""
    from ddfad_fast.config import ReconstructConfig
    feats = fd_mfcc(fsdd_waves(fsdd_files[:2], 8000, torch.float32), 8000)
    few = fd_mfcc_to_audio(feats, 8000, n_iter=2)
    torch.testing.assert_close(fd_mfcc_to_audio(feats, 8000, reconstruct=ReconstructConfig(n_iter=2)), few,
                               rtol=0, atol=0)
    torch.testing.assert_close(fd_mfcc_to_audio(feats, 8000, reconstruct=ReconstructConfig(n_iter=7), n_iter=2), few,
                               rtol=0, atol=0)
    torch.testing.assert_close(fd_mfcc_to_audio(feats, 8000), fd_mfcc_to_audio(feats, 8000, n_iter=32), rtol=0, atol=0)
    assert not torch.equal(fd_mfcc_to_audio(feats, 8000), few)


def test_fd_mfcc_to_audio_bad_input():
    with pytest.raises(ParameterError, match="sample_rate"):
        fd_mfcc_to_audio(torch.zeros(1, 3, 20, 101), 16000)
    with pytest.raises(ParameterError, match="features must be"):
        fd_mfcc_to_audio(torch.zeros(1, 2, 20, 101), 8000)


def test_quality_metrics(rng):
    y = torch.from_numpy(rng.standard_normal((2, 3000)))
    S = reference.stft(y, 256, 80, 160, "hann").abs()
    assert float(spectral_convergence(S, y, 256, 80, 160).max()) < -100
    assert float(log_spectral_distance(S, y, 256, 80, 160).max()) < 1e-6
    noisy = y + 0.1 * torch.from_numpy(rng.standard_normal((2, 3000)))
    sc = spectral_convergence(S, noisy, 256, 80, 160)
    assert bool((sc > -25).all()) and bool((sc < -10).all())
    assert bool((log_spectral_distance(S, noisy, 256, 80, 160) > 0.1).all())
    with pytest.raises(ParameterError, match="STFT of wave"):
        spectral_convergence(S, y[:, :1000], 256, 80, 160)


def test_deemphasis_inverts_preemphasis(rng):
    x = torch.from_numpy(rng.standard_normal((2, 1001)))
    torch.testing.assert_close(reference.deemphasis(reference.preemphasis(x, 0.97), 0.97), x,
                               **tol("deemphasis", "float64", "reference"))
    pre = reference.preemphasis(x, 0.97).numpy()
    np.testing.assert_allclose(reference.deemphasis(torch.from_numpy(pre), 0.97).numpy(),
                               librosa.effects.deemphasis(pre, coef=0.97), **tol("deemphasis", "float64", "reference"))
