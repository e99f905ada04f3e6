"""ddfad_fast.compat.librosa's variants beyond the fast kernels (center=False, padding modes, scipy windows, DCT
types and norms, HTK / unnormalised mels, delta modes and orders), stft, filters.mel, amplitude_to_db and the
exception class, against librosa on random inputs and on a real FSDD clip."""
import warnings

import numpy as np
import pytest
import soundfile as sf

import ddfad_fast.compat.librosa as fast
from ddfad_fast.errors import BackendFallbackWarning, ParameterError

librosa = pytest.importorskip("librosa")
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def clip(fsdd_files):
    return sf.read(str(fsdd_files[0]), dtype="float32")[0]


def _close(got, want, rtol=1e-6):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, atol=rtol * max(float(np.abs(want).max()), 1e-30), rtol=0)


@pytest.mark.parametrize("kw", [dict(), dict(center=False), dict(pad_mode="reflect"), dict(pad_mode="edge"),
                                dict(window="rect", n_fft=255, win_length=128), dict(window=("kaiser", 4.0)),
                                dict(window=np.hanning, hop_length=50), dict(dtype=np.complex128)])
def test_stft_matches_librosa(clip, rng, kw):
    args = {"n_fft": 256, **kw}
    for y in (clip[:3000], rng.standard_normal((2, 1001))):
        _close(fast.stft(y, **args), librosa.stft(y, **args))


def test_stft_refuses_as_librosa(rng):
    y = rng.standard_normal(100)
    with pytest.raises(librosa.ParameterError, match="uncentered"):
        fast.stft(y, n_fft=256, center=False)
    with pytest.raises(librosa.ParameterError, match="not supported"):
        fast.stft(y, n_fft=64, pad_mode="wrap")
    with pytest.raises(librosa.ParameterError, match="floating"):
        fast.stft(np.arange(100), n_fft=64)
    with pytest.warns(UserWarning, match="too large"):
        fast.stft(y, n_fft=256)


@pytest.mark.parametrize("kw", [dict(), dict(htk=True), dict(norm=None), dict(norm=1), dict(norm=2.0),
                                dict(norm=np.inf, htk=True, fmin=50.0, fmax=3000.0), dict(dtype=np.float64)])
def test_mel_filterbank_is_librosas_to_the_bit(kw):
    np.testing.assert_array_equal(fast.filters.mel(sr=8000, n_fft=256, n_mels=40, **kw),
                                  librosa.filters.mel(sr=8000, n_fft=256, n_mels=40, **kw))
    with pytest.raises(librosa.ParameterError):
        fast.filters.mel(sr=8000, n_fft=256, norm="bogus")
    with pytest.warns(UserWarning, match="Empty filters"):
        fast.filters.mel(sr=8000, n_fft=64, n_mels=128)


@pytest.mark.parametrize("kw", [dict(htk=True), dict(norm=None), dict(center=False), dict(pad_mode="reflect"),
                                dict(window="blackman", power=1.0), dict(dct_type=1), dict(dct_type=3, norm=None),
                                dict(n_mfcc=50, n_mels=40)])
def test_mfcc_variants_match_librosa(clip, kw):
    y = np.stack([np.resize(clip, 4000), 0.1 * np.resize(clip, 5000)[1000:]])
    args = dict(sr=8000, n_fft=256, hop_length=80, **({"n_mels": 40} if "n_mels" not in kw else {}), **kw)
    _close(fast.feature.mfcc(y=y, **args), librosa.feature.mfcc(y=y, **args), rtol=1e-5)


@pytest.mark.parametrize("dct_type", [1, 2, 3])
@pytest.mark.parametrize("norm", [None, "ortho"])
@pytest.mark.parametrize("lifter", [0, 13])
def test_mfcc_and_its_inverse_from_S_every_dct(rng, dct_type, norm, lifter):
    S = librosa.power_to_db(rng.random((3, 64, 7)) ** 2)
    got = fast.feature.mfcc(S=S, dct_type=dct_type, norm=norm, n_mfcc=20, lifter=lifter)
    _close(got, librosa.feature.mfcc(S=S, dct_type=dct_type, norm=norm, n_mfcc=20, lifter=lifter))
    _close(fast.feature.inverse.mfcc_to_mel(got, n_mels=64, dct_type=dct_type, norm=norm, lifter=lifter),
           librosa.feature.inverse.mfcc_to_mel(got, n_mels=64, dct_type=dct_type, norm=norm, lifter=lifter))


@pytest.mark.parametrize("lifter", [-1, np.nan])
def test_a_bad_lifter_raises_librosas_error(rng, lifter):
    with pytest.raises(librosa.ParameterError, match="lifter"):
        fast.feature.mfcc(S=rng.random((40, 5)), lifter=lifter)


@pytest.mark.parametrize("kw", [dict(order=3, width=5), dict(mode="nearest"), dict(mode="mirror", order=2),
                                dict(mode="wrap", axis=0, width=3), dict(mode="constant", cval=1.5),
                                dict(polyorder=3, width=7), dict(order=4, width=11, mode="interp"),
                                dict(delta=0.5)])
def test_delta_variants_match_librosa(rng, clip, kw):
    for data in (rng.standard_normal((5, 30)), librosa.feature.mfcc(y=clip, sr=8000, n_fft=256, hop_length=64, n_mels=40)):
        _close(fast.feature.delta(data, **kw), librosa.feature.delta(data, **kw), rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        fast.feature.delta(data, mode="bogus")


@pytest.mark.parametrize("kw", [dict(center=False), dict(pad_mode="reflect"), dict(window="rect"),
                                dict(window=("tukey", 0.5), win_length=200), dict(length=4000, center=False),
                                dict(n_fft=255, window="rect")])
def test_griffinlim_variants_match_librosa(clip, kw):
    kw = dict(kw)
    n_fft = kw.pop("n_fft", 256)
    y = np.resize(clip, 4000).astype(np.float64)
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=64, **{k: v for k, v in kw.items() if k != "length"}))
    want = librosa.griffinlim(S, n_iter=6, n_fft=n_fft, hop_length=64, random_state=0, **kw)
    got = fast.griffinlim(S, n_iter=6, n_fft=n_fft, hop_length=64, random_state=0, dtype=np.float32, **kw)
    _close(got, want.astype(np.float32), rtol=1e-5)


def test_a_variant_warns_once(clip):
    y = clip[:4000]
    with pytest.warns(BackendFallbackWarning, match="dct_type=1, norm=None"):
        fast.feature.mfcc(y=y, sr=8000, n_fft=256, n_mels=40, dct_type=1, norm=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        fast.feature.mfcc(y=y, sr=8000, n_fft=256, n_mels=40, dct_type=1, norm=None)


def test_defaults_stay_on_the_fast_kernels(clip):
    y = np.stack([np.resize(clip, 4000), np.resize(clip, 6000)[2000:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        m = fast.feature.mfcc(y=y, sr=8000, n_fft=256, hop_length=80, win_length=160, n_mels=40)
        fast.feature.delta(m, order=2)
        fast.griffinlim(np.abs(fast.stft(y[0], n_fft=256)), n_iter=2, random_state=0)


def test_mel_to_stft_is_librosas_solution_and_takes_negative_input(rng):
    bank = librosa.filters.mel(sr=8000, n_fft=256, n_mels=40)
    M = bank @ rng.standard_normal((129, 5)) ** 2 - 0.01           # some bands negative, as librosa accepts
    for power in (1.0, 2.0):
        _close(fast.feature.inverse.mel_to_stft(M, sr=8000, n_fft=256, power=power),
               librosa.feature.inverse.mel_to_stft(M, sr=8000, n_fft=256, power=power), rtol=1e-6)


def test_amplitude_to_db_and_back(rng):
    S = rng.random((3, 20)) ** 4
    for kw in (dict(), dict(ref=np.max), dict(top_db=None, amin=1e-3)):
        _close(fast.amplitude_to_db(S, **kw), librosa.amplitude_to_db(S, **kw))
    _close(fast.db_to_amplitude(S, ref=2.0), librosa.db_to_amplitude(S, ref=2.0))
    with pytest.warns(UserWarning, match="complex"):
        fast.amplitude_to_db(S.astype(np.complex64))


def test_parameter_error_is_librosas_and_ours():
    assert issubclass(fast.ParameterError, librosa.ParameterError) and issubclass(fast.ParameterError, ParameterError)
    for call in (lambda: fast.griffinlim(np.ones((5, 3)), momentum=-1), lambda: fast.power_to_db(1.0, amin=0),
                 lambda: fast.feature.delta(np.ones((3, 5)), width=9)):
        with pytest.raises(librosa.ParameterError):
            call()
