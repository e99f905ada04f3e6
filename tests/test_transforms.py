"""torchaudio-style modules: the same results as the functions they wrap (and as librosa), any leading batch
shape, float64, torch.compile, and torchaudio settings with another meaning refused."""
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import ddfad_fast as dd
from ddfad_fast.errors import ParameterError
from ddfad_fast.audio.transforms import FDMFCC, MFCC, Deltas, GriffinLim, InverseFDMFCC, feature_config
from tolerances import tol


def test_fdmfcc_module_equals_the_function_for_any_leading_shape():
    x = torch.randn(2, 3, 7000, generator=torch.Generator().manual_seed(0)) * 0.1
    module = FDMFCC()
    got = module(x)
    want = dd.fd_mfcc(x.reshape(6, -1), 8000, dd.FeatureConfig(fixed_length=None))
    assert got.shape == (2, 3, 3, 20, want.shape[-1]) and torch.equal(got.reshape(want.shape), want)
    assert torch.equal(module(x[0, 0]), want[0])                          # (time,) -> (3, n_mfcc, frames)
    got64 = module(x.double())
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64.float(), got, **tol("mfcc", "float32"))


def test_mfcc_module_matches_librosa_on_fsdd(fsdd_files):
    librosa = pytest.importorskip("librosa")
    melkwargs = {"n_fft": 256, "win_length": 160, "hop_length": 80, "n_mels": 40}
    module = MFCC(sample_rate=8000, n_mfcc=20, melkwargs=melkwargs)
    for path in fsdd_files[:3]:
        wave = sf.read(str(path), dtype="float32")[0]
        want = librosa.feature.mfcc(y=wave, sr=8000, n_mfcc=20, n_fft=256, win_length=160, hop_length=80, n_mels=40)
        got = module(torch.from_numpy(wave)).numpy()
        np.testing.assert_allclose(got, want, **tol("mfcc", "float32"))


def test_torchaudio_argument_defaults_and_refusals():
    c = feature_config(16000, 13, {"n_fft": 400})
    assert (c.n_fft, c.win_length, c.hop_length, c.n_mels, c.sample_rate) == (400, 400, 200, 40, 16000)
    assert feature_config(16000, 20).n_fft == dd.FeatureConfig.speech16k().n_fft
    c = feature_config(8000, 20, {"f_min": 30.0, "f_max": 3000.0, "window_fn": torch.hamming_window, "hop_length": 64})
    assert (c.fmin, c.fmax, c.window, c.hop_length) == (30.0, 3000.0, "hamming", 64)
    for bad in ({"mel_scale": "htk"}, {"norm": None}, {"pad_mode": "reflect"}, {"power": 1.0}, {"center": False},
                {"window_fn": torch.blackman_window}, {"n_bins": 3}):
        with pytest.raises(ParameterError, match="not supported|unknown"):
            MFCC(melkwargs=bad)
    for bad in ({"dct_type": 3}, {"norm": None}, {"log_mels": True}):
        with pytest.raises(ParameterError, match="only dct_type=2"):
            MFCC(**bad)


def test_deltas_module():
    x = torch.randn(2, 4, 20, 30, dtype=torch.float64)
    for order in (1, 2):
        assert torch.equal(Deltas(win_length=5, order=order)(x), dd.deltas(x, order=order, width=5))
    with pytest.raises(ParameterError, match="odd"):
        Deltas(win_length=4)


def test_griffin_lim_module_takes_a_power_spectrogram():
    gen = torch.Generator().manual_seed(1)
    wave = torch.randn(2, 4000, generator=gen, dtype=torch.float64)
    magnitude = torch.stft(wave, 256, 64, window=torch.hann_window(256, dtype=torch.float64),
                           return_complex=True).abs()
    module = GriffinLim(n_fft=256, hop_length=64, n_iter=8, rand_init=False, length=4000)
    want = dd.griffin_lim(magnitude, 256, 64, n_iter=8, init_phase=torch.ones_like(magnitude, dtype=torch.complex128),
                          length=4000)
    got = module(magnitude.square()[None])                                   # (1, 2, F, T): leading shape kept
    assert got.shape == (1, 2, 4000)
    torch.testing.assert_close(got[0], want, **tol("griffin_lim", "float64", "transform"))
    assert GriffinLim(n_fft=256, power=1.0).hop_length == 128                # torchaudio's default: win_length // 2
    with pytest.raises(ParameterError, match="window_fn"):
        GriffinLim(window_fn=torch.bartlett_window)


def test_inverse_fdmfcc_module_equals_the_function():
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(2)) * 0.1
    config = dd.FeatureConfig()
    feats = dd.fd_mfcc(x, 8000, config)
    got = InverseFDMFCC(length=8000, n_iter=4)(feats[None])
    want = dd.fd_mfcc_to_audio(feats, 8000, config, n_iter=4)
    assert got.shape == (1, 2, 8000) and torch.equal(got[0], want)


def test_modules_run_under_torch_compile():
    x = torch.randn(3, 8000, generator=torch.Generator().manual_seed(3)) * 0.1
    module = FDMFCC()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # dynamo's notes on the lru_cache'd tables
        compiled = torch.compile(module)
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)


def test_matches_torchaudio_where_the_semantics_coincide(fsdd_files):
    """torchaudio's MFCC with our settings (Slaney mels and norm, zero padding), one clip per call (its
    top_db floor is shared across a batch): max abs 5e-4; first-order deltas equal compute_deltas away
    from the edges (torchaudio replicates the edge frames, librosa interpolates; its delta-delta is a
    delta of a delta, ours the second-derivative filter, so that channel is not compared)."""
    torchaudio = pytest.importorskip("torchaudio")
    melkwargs = {"n_fft": 256, "win_length": 160, "hop_length": 80, "n_mels": 40}
    ours = FDMFCC(sample_rate=8000, n_mfcc=20, melkwargs=melkwargs, preemphasis=0.0)
    theirs = torchaudio.transforms.MFCC(sample_rate=8000, n_mfcc=20, norm="ortho", log_mels=False,
                                        melkwargs=dict(melkwargs, center=True, pad_mode="constant", norm="slaney",
                                                       mel_scale="slaney"))
    half = 9 // 2
    for path in fsdd_files[:4]:
        wave = torch.from_numpy(sf.read(str(path), dtype="float32")[0])
        got, want = ours(wave), theirs(wave)
        torch.testing.assert_close(got[0], want, **tol("mfcc", "float32"))
        delta = torchaudio.functional.compute_deltas(want[None], win_length=9)[0]
        torch.testing.assert_close(got[1][:, half:-half], delta[:, half:-half], **tol("deltas", "float32", "torchaudio"))
