"""ddfad_fast.compat.librosa against librosa itself: the same calls, the design doc's tolerances, on a grid of
settings and on real FSDD clips (the defaults, on the fast kernels; the variants computed in plain torch are in
test_compat_librosa_variants.py)."""
import warnings

import numpy as np
import pytest
import soundfile as sf

import ddfad_fast.compat.librosa as fast
from ddfad_fast.errors import ParameterError
from tolerances import tol

librosa = pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def clips(fsdd_files):
    """Four FSDD clips (8 kHz, different lengths) and one 16 kHz test signal."""
    waves = [sf.read(str(f), dtype="float32")[0] for f in fsdd_files[:4]]
    return waves


def _close(got, want, rtol: float, atol: float):
    """``got`` equals ``want`` in shape and dtype, and within (rtol, atol) (a row of tests/tolerances.py)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def _gained(row: dict, gain: float) -> dict:
    return dict(row, atol=row["atol"] * gain)


MFCC_GRID = [
    dict(sr=8000),
    dict(sr=8000, n_fft=256, hop_length=80, win_length=160, n_mels=40),
    dict(sr=8000, n_fft=255, hop_length=64, n_mels=32, fmin=50.0, fmax=3500.0),
    dict(sr=8000, n_fft=512, hop_length=128, win_length=400, n_mels=64, window="hamming", n_mfcc=13),
    dict(sr=16000, n_fft=400, hop_length=160, n_mels=40, lifter=22),
    dict(sr=22050, n_fft=1024, hop_length=256, n_mels=128, n_mfcc=40),
    dict(sr=16000, n_fft=511, hop_length=100, win_length=300, n_mels=80, fmin=20.0),
]


@pytest.mark.parametrize("kw", MFCC_GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_mfcc_per_clip_matches_librosa(clips, kw):
    """One clip per call (the fused kernel): the mfcc rows of tests/tolerances.py (max abs 5e-4 float32, 1e-6
    float64), both times the lifter's gain 1 + lifter / 2."""
    gain = 1 + kw.get("lifter", 0) / 2
    for y in clips[:2]:
        _close(fast.feature.mfcc(y=y, **kw), librosa.feature.mfcc(y=y, **kw), **_gained(tol("mfcc", "float32"), gain))
    y64 = clips[2].astype(np.float64)
    _close(fast.feature.mfcc(y=y64, **kw), librosa.feature.mfcc(y=y64, **kw), **_gained(tol("mfcc", "float64"), gain))


def test_mfcc_of_a_batch_shares_one_floor_as_librosa(clips):
    """A batch call floors at top_db below the loudest clip, as librosa does (a quiet clip moves)."""
    batch = np.stack([np.resize(c, 8000) for c in clips[:3]])
    batch[1] *= 1e-4                                         # 80 dB quieter
    want = librosa.feature.mfcc(y=batch, sr=8000, n_mels=40, n_fft=256, hop_length=80)
    got = fast.feature.mfcc(y=batch, sr=8000, n_mels=40, n_fft=256, hop_length=80)
    _close(got, want, **tol("mfcc", "float32"))
    b64 = batch[None].astype(np.float64)                     # (1, 3, n): any leading shape
    _close(fast.feature.mfcc(y=b64, sr=8000, n_mels=40, n_fft=256, hop_length=80),
           librosa.feature.mfcc(y=b64, sr=8000, n_mels=40, n_fft=256, hop_length=80), **tol("mfcc", "float64"))
    solo = fast.feature.mfcc(y=batch[1], sr=8000, n_mels=40, n_fft=256, hop_length=80)
    assert np.abs(solo - got[1]).max() > 1.0                  # librosa's semantics, not the per-clip ones


def test_mfcc_from_a_log_mel_spectrogram(clips):
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=clips[0], sr=8000, n_mels=40))
    _close(fast.feature.mfcc(S=S, n_mfcc=13, lifter=10), librosa.feature.mfcc(S=S, n_mfcc=13, lifter=10),
           **tol("mfcc_of_log_mel", "float32", "compat"))


@pytest.mark.parametrize("kw", [dict(sr=8000), dict(sr=8000, n_fft=255, hop_length=50, n_mels=30, power=1.0),
                                dict(sr=16000, n_fft=512, win_length=320, hop_length=128, fmax=6000.0)])
def test_melspectrogram_matches_librosa(clips, kw):
    y = np.stack([np.resize(c, 6000) for c in clips[:2]])
    want = librosa.feature.melspectrogram(y=y, **kw)
    _close(fast.feature.melspectrogram(y=y, **kw), want, **tol("melspectrogram", "float32", "compat", float(want.max())))
    S = np.abs(librosa.stft(y[0], n_fft=kw.get("n_fft", 2048), hop_length=kw.get("hop_length", 512))) ** 2
    sr = kw["sr"]
    _close(fast.feature.melspectrogram(S=S, sr=sr, n_fft=kw.get("n_fft", 2048)),
           librosa.feature.melspectrogram(S=S, sr=sr, n_fft=kw.get("n_fft", 2048)),
           **tol("melspectrogram_of_power", "float32", "compat", float(S.max())))


def test_power_to_db_and_back(rng):
    S = rng.random((2, 30, 20)) ** 8
    for kw in (dict(), dict(ref=np.max), dict(top_db=None), dict(amin=1e-5, top_db=40.0, ref=0.5)):
        _close(fast.power_to_db(S, **kw), librosa.power_to_db(S, **kw), **tol("power_to_db", "float64", "compat"))
    _close(fast.db_to_power(fast.power_to_db(S, top_db=None)), librosa.db_to_power(librosa.power_to_db(S, top_db=None)),
           **tol("db_to_power", "float64", "compat"))
    with pytest.warns(UserWarning, match="complex"):
        fast.power_to_db(S.astype(np.complex128))
    with pytest.raises(ParameterError, match="amin"):
        fast.power_to_db(S, amin=0)


@pytest.mark.parametrize("width,order,axis", [(9, 1, -1), (9, 2, -1), (5, 1, 0), (3, 2, 1), (7, 1, -2)])
def test_delta_matches_librosa(rng, width, order, axis):
    data = rng.standard_normal((9, 12, 40)).astype(np.float32)
    _close(fast.feature.delta(data, width=width, order=order, axis=axis),
           librosa.feature.delta(data, width=width, order=order, axis=axis), **tol("deltas", "float32"))


def test_delta_refuses_what_librosa_refuses(rng):
    data = rng.standard_normal((4, 5))
    with pytest.raises(librosa.ParameterError, match="cannot exceed"):
        fast.feature.delta(data, width=9)
    with pytest.raises(ParameterError, match="odd"):
        fast.feature.delta(data, width=4)
    with pytest.raises(librosa.ParameterError, match="positive integer"):
        fast.feature.delta(rng.standard_normal((4, 20)), order=0)


@pytest.mark.parametrize("n_fft,hop", [(256, 64), (255, 80), (512, None)])
def test_griffinlim_with_librosas_phases_matches_librosa(clips, n_fft, hop):
    """Seeded random phases drawn as librosa draws them, float64, 8 iterations: 1e-10 of the peak (float64 end
    to end, as the other float64 Griffin-Lim checks), on an FSDD clip and on fresh noise."""
    noise = np.random.default_rng(n_fft).standard_normal(3001) * 2.0
    for y in (clips[0].astype(np.float64), noise):
        S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
        for init, state in (("random", 3), (None, None)):
            want = librosa.griffinlim(S, n_iter=8, n_fft=n_fft, hop_length=hop, init=init, random_state=state)
            _close(fast.griffinlim(S, n_iter=8, n_fft=n_fft, hop_length=hop, init=init, random_state=state), want,
                   **tol("griffin_lim", "float64", "compat", float(np.abs(want).max())))
    S = np.abs(librosa.stft(clips[0].astype(np.float64), n_fft=n_fft, hop_length=hop))
    S32 = np.stack([S, 0.5 * S]).astype(np.float32)            # a batch, float32, a fixed length
    length = len(clips[0])                                     # not the default: the clip's own
    want = librosa.griffinlim(S32, n_iter=4, n_fft=n_fft, hop_length=hop, random_state=np.random.RandomState(1),
                              length=length)
    got = fast.griffinlim(S32, n_iter=4, n_fft=n_fft, hop_length=hop, random_state=np.random.RandomState(1),
                          length=length)
    _close(got, want, **tol("griffin_lim", "float32", "compat", float(np.abs(want).max())))


def test_mfcc_inversion(clips):
    """mfcc_to_mel equals librosa's; the NNLS fits the mel spectrogram no worse than librosa's; mfcc_to_audio
    gives audio of librosa's length and dtype."""
    kw = dict(sr=8000, n_fft=256, hop_length=64)
    m = librosa.feature.mfcc(y=clips[0], n_mels=40, lifter=12, **kw)
    want_mel = librosa.feature.inverse.mfcc_to_mel(m, n_mels=40, lifter=12)
    mel = fast.feature.inverse.mfcc_to_mel(m, n_mels=40, lifter=12)
    _close(mel, want_mel, **tol("mfcc_to_mel", "float32", "compat", float(want_mel.max())))
    bank = librosa.filters.mel(sr=8000, n_fft=256, n_mels=40)
    ours = fast.feature.inverse.mel_to_stft(mel, sr=8000, n_fft=256)
    theirs = librosa.feature.inverse.mel_to_stft(mel, sr=8000, n_fft=256)
    assert (ours >= 0).all()
    _close(ours, theirs, atol=1e-5 * float(theirs.max()), rtol=1e-4)      # librosa's own NNLS solution
    residual = (lambda x: np.linalg.norm(bank @ x ** 2 - mel) / np.linalg.norm(mel))
    assert residual(ours) <= residual(theirs) + 1e-6
    audio = fast.feature.inverse.mfcc_to_audio(m, n_mels=40, lifter=12, **kw)
    want = librosa.feature.inverse.mfcc_to_audio(m, n_mels=40, lifter=12, **kw)
    assert audio.shape == want.shape and audio.dtype == want.dtype and np.isfinite(audio).all()


def test_everything_else_is_librosas_own():
    assert fast.load is librosa.load and fast.resample is librosa.resample
    assert fast.feature.chroma_stft is librosa.feature.chroma_stft
    assert fast.feature.inverse.mel_to_stft is not librosa.feature.inverse.mel_to_stft
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(fast.feature.mfcc)
