"""The numba CPU backend of op ``mfcc`` against librosa called per clip (design doc section 4)."""
import numpy as np
import pytest
import torch

pytest.importorskip("numba", reason="the numba backend needs numba")
librosa = pytest.importorskip("librosa", reason="the oracle here is librosa")
soundfile = pytest.importorskip("soundfile")

from ddfad_fast import backends  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.cpu_backend import mfcc  # noqa: E402


def _librosa_mfcc(clip: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    y = librosa.effects.preemphasis(clip, coef=cfg.preemphasis)
    spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=cfg.window, center=True, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=spec, sr=cfg.sample_rate, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                         fmax=cfg.fmax, htk=False, norm="slaney")
    db = librosa.power_to_db(mel, ref=cfg.ref, amin=cfg.amin, top_db=cfg.top_db)
    return librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc)


def _check(waves: np.ndarray, cfg: FeatureConfig) -> None:
    want = np.stack([_librosa_mfcc(c, cfg) for c in waves.astype(np.float64)])
    got64 = mfcc(torch.from_numpy(waves.astype(np.float64)), cfg)
    got32 = mfcc(torch.from_numpy(waves.astype(np.float32)), cfg)
    assert got64.dtype == torch.float64 and got32.dtype == torch.float32
    assert got64.shape == want.shape
    np.testing.assert_allclose(got64.numpy(), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-5, atol=5e-4)


@pytest.mark.parametrize("batch,length", [(1, 8000), (3, 8000), (2, 4001), (2, 100), (1, 555)])
def test_random_inputs_match_librosa(rng, batch, length):
    scale = 10.0 ** rng.uniform(-3, 0, size=(batch, 1))
    _check(rng.standard_normal((batch, length)) * scale, FeatureConfig())


def test_speech16k_and_hamming(rng):
    cfg = FeatureConfig.speech16k()
    _check(rng.standard_normal((2, 16000)) * 0.1, cfg)
    _check(rng.standard_normal((2, 3001)) * 0.1, FeatureConfig(window="hamming"))


def test_fsdd_clips_match_librosa(fsdd_files):
    clips = []
    for path in fsdd_files[:8]:
        y, sr = soundfile.read(path, dtype="float64")
        assert sr == 8000
        clips.append(np.pad(y, (0, max(0, 8000 - y.size)))[:8000])
    _check(np.stack(clips), FeatureConfig())


def test_top_db_is_per_clip(rng):
    cfg = FeatureConfig()
    loud = rng.standard_normal(8000)
    quiet = rng.standard_normal(8000) * 1e-6
    both = mfcc(torch.from_numpy(np.stack([loud, quiet])), cfg)
    solo = mfcc(torch.from_numpy(quiet[None]), cfg)
    assert torch.equal(both[1:], solo)


def test_forcing_numba_dispatches_here(monkeypatch):
    monkeypatch.setenv("DDFAD_BACKEND", "numba")
    name, fn = backends.get("mfcc", "cpu")
    assert name == "numba" and fn is mfcc
