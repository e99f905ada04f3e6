"""Public feature ops (fd_mfcc, mfcc, deltas, mel_filterbank) and the reference pipeline vs librosa.

Tolerances are those of docs/architecture.md section 4. librosa is called per clip; its top_db floor is per call,
so per clip here, which is our semantics.
"""
import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from ddfad_fast import FeatureConfig, ParameterError, deltas, fd_mfcc, mel_filterbank, mfcc  # noqa: E402
from ddfad_fast.ops import dispatch, tables, reference  # noqa: E402
from ddfad_fast.errors import BackendUnavailableError  # noqa: E402
from stft_cases import params as stft_params  # noqa: E402
from tolerances import tol  # noqa: E402


def librosa_fd_mfcc(clip: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(3, n_mfcc, T) from librosa, float64; deltas by the edge rule when the clip has fewer than 9 frames."""
    # librosa's initial state 2 y[0] - y[1] needs two samples; a one-sample clip takes y[1] = 0
    zi = [2 * clip[0]] if clip.size == 1 else None
    y = librosa.effects.preemphasis(clip, coef=cfg.preemphasis, zi=zi) if cfg.preemphasis else clip
    power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                window=cfg.window, center=True, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                         fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney")
    db = librosa.power_to_db(mel, ref=cfg.ref, amin=cfg.amin, top_db=cfg.top_db)
    coeffs = librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc)
    n_frames, width = coeffs.shape[1], cfg.delta_width
    if n_frames >= width:
        d1 = librosa.feature.delta(coeffs, width=width, order=1)
        d2 = librosa.feature.delta(coeffs, width=width, order=2)
    else:  # the documented edge rule: edge-pad to `width` frames, differentiate, crop
        left = (width - n_frames) // 2
        padded = np.pad(coeffs, ((0, 0), (left, width - n_frames - left)), mode="edge")
        d1 = librosa.feature.delta(padded, width=width, order=1)[:, left:left + n_frames]
        d2 = librosa.feature.delta(padded, width=width, order=2)[:, left:left + n_frames]
    return np.stack([coeffs, d1, d2])


def check_against_librosa(got: torch.Tensor, waves: np.ndarray, cfg: FeatureConfig) -> None:
    float64 = got.dtype == torch.float64
    for b, clip in enumerate(waves.astype(np.float64)):
        want = librosa_fd_mfcc(clip, cfg)
        g = got[b].cpu().double().numpy()
        assert g.shape == want.shape
        if float64:
            np.testing.assert_allclose(g, want, **tol("mfcc", "float64"))
        else:
            np.testing.assert_allclose(g[0], want[0], **tol("mfcc", "float32"))
            np.testing.assert_allclose(g[1:], want[1:], **tol("deltas", "float32"))


def fsdd_batch(files, length=8000, dtype=np.float32):
    clips = [sf.read(str(p), dtype="float64")[0] for p in files]
    return np.stack([np.pad(c, (0, max(0, length - c.size)))[:length] for c in clips]).astype(dtype)


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    """These tests check the reference pipeline; fast backends have their own test files."""
    monkeypatch.setenv("DDFAD_BACKEND", "reference")


def test_mel_filterbank_matches_librosa():
    """Odd n_fft too: its bins are k sr / n_fft, the last one below sr / 2."""
    for cfg in (FeatureConfig.fsdd(), FeatureConfig.speech16k(), FeatureConfig(fmin=300.0, fmax=3400.0, n_mels=26),
                FeatureConfig(n_fft=255), FeatureConfig(sample_rate=22050, n_fft=511, win_length=441, hop_length=221)):
        want = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                   fmax=cfg.fmax, dtype=np.float64)
        got = mel_filterbank(cfg, dtype=torch.float32)
        assert got.shape == (cfg.n_mels, cfg.n_freqs) and got.dtype == torch.float32
        np.testing.assert_allclose(got.double().numpy(), want, **tol("mel_filterbank", "float32"))


@pytest.mark.parametrize("case", stft_params())
def test_feature_tables_of_every_geometry(case):
    """dsp's tables, the only ones any backend gets: the frame count is librosa's (centred frames, odd n_fft
    included), the mel filterbank librosa's (its bins are k sr / n_fft, below sr / 2 for odd n_fft), the band
    forms reproduce the dense tables exactly, the window support holds every non-zero tap."""
    cfg = case.config()
    tab = tables.feature_tables(cfg, case.length)
    assert tab.n_frames == cfg.n_frames(case.length) == case.n_frames
    spec = librosa.stft(np.zeros(case.length), n_fft=case.n_fft, hop_length=case.hop_length,
                        win_length=case.win_length, window=case.window, center=True, pad_mode="constant")
    assert spec.shape == (cfg.n_freqs, tab.n_frames)
    want = librosa.filters.mel(sr=case.sample_rate, n_fft=case.n_fft, n_mels=cfg.n_mels, dtype=np.float64)
    np.testing.assert_allclose(tab.mel, want, **tol("mel_filterbank", "float64"))
    rebuilt = np.zeros_like(tab.mel)
    for m, (lo, hi) in enumerate(tab.mel_bands):
        rebuilt[m, lo:hi] = tab.mel_weights[m, :hi - lo]
        assert not tab.mel_weights[m, hi - lo:].any()
    np.testing.assert_array_equal(rebuilt, tab.mel)
    for group in (16, 7):
        for g, (lo, hi) in enumerate(tables.mel_groups(case.sample_rate, case.n_fft, cfg.n_mels, 0.0, cfg.f_max, group)):
            rows = tab.mel[g * group:(g + 1) * group]
            assert not rows[:, :lo].any() and not rows[:, hi:].any()
    lo, hi = tab.window_support
    assert tab.window[lo] != 0 and tab.window[hi - 1] != 0
    assert not tab.window[:lo].any() and not tab.window[hi:].any()
    assert tab.ref_db == 10.0 * np.log10(max(cfg.amin, cfg.ref))
    assert tables.feature_tables(cfg, case.length) is tab                       # cached: one device copy per table


@pytest.mark.parametrize("width", [3, 5, 9])
@pytest.mark.parametrize("n_frames", [1, 2, 4, 8, 9, 10, 23])
def test_delta_bands_read_with_clamped_rows_equal_delta_matrix(n_frames, width):
    """The delta table every kernel reads: frame min(start[t] + k, T - 1) weighted by coef[order, k, t]
    (clips shorter than the width included) is tables.delta_matrix exactly."""
    start, coef = tables.delta_bands(n_frames, width)
    assert start.shape == (n_frames,) and coef.shape == (2, width, n_frames)
    for order in (1, 2):
        got = np.zeros((n_frames, n_frames))
        for t in range(n_frames):
            assert t - (width - 1) <= start[t] <= t                         # inside the kernels' halo rows
            for k in range(width):
                got[t, min(start[t] + k, n_frames - 1)] += coef[order - 1, k, t]
        np.testing.assert_array_equal(got, tables.delta_matrix(n_frames, width, order))


@pytest.mark.parametrize("case", stft_params())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_matches_librosa_on_every_geometry(case, rng, dtype):
    cfg = case.config()
    waves = (rng.standard_normal((2, case.length)) * np.array([[1.0], [1e-3]])).astype(dtype)
    got = fd_mfcc(torch.from_numpy(waves), case.sample_rate, cfg)
    assert got.shape == (2, 3, cfg.n_mfcc, case.n_frames)
    check_against_librosa(got, waves, cfg)


def test_window_and_dct_match_librosa_and_scipy():
    import scipy.fft
    for name in ("hann", "hamming"):
        want = librosa.util.pad_center(librosa.filters.get_window(name, 160, fftbins=True), size=256)
        np.testing.assert_allclose(tables.window(name, 160, 256), want, **tol("window", "float64"))
    x = np.random.default_rng(0).standard_normal((40, 7))
    np.testing.assert_allclose(tables.dct_matrix(40, 20) @ x, scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:20],
                               **tol("dct", "float64"))


@pytest.mark.parametrize("cfg", [FeatureConfig.fsdd(), FeatureConfig.speech16k(),
                                 FeatureConfig(window="hamming", top_db=None, preemphasis=0.0)],
                         ids=["fsdd", "speech16k", "hamming-nofloor-noemph"])
def test_power_spectrogram_matches_librosa(cfg, rng):
    y = rng.standard_normal(cfg.fixed_length + 37)
    want = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=cfg.window, center=True, pad_mode="constant")) ** 2
    spec = reference.stft(torch.tensor(y, dtype=torch.float32)[None], cfg.n_fft, cfg.hop_length, cfg.win_length,
                          cfg.window)
    got = (spec.real.square() + spec.imag.square())[0].double().numpy()
    np.testing.assert_allclose(got, want, **tol("power_spectrogram", "float32", "reference", want.max()))


@pytest.mark.parametrize("length", [8000, 7999, 1001, 700, 100, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_clips_match_librosa(rng, length, dtype):
    """Odd lengths, clips of fewer than 9 frames (700 samples = 9 frames, 100 = 2) and shorter than one window."""
    cfg = FeatureConfig(fixed_length=None)
    waves = (rng.standard_normal((2, length)) * 10.0 ** rng.uniform(-3, 0, size=(2, 1))).astype(dtype)
    got = fd_mfcc(torch.from_numpy(waves), 8000, cfg)
    assert got.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
    assert got.shape == (2, 3, 20, 1 + length // 80)
    check_against_librosa(got, waves, cfg)


@pytest.mark.parametrize("cfg", [FeatureConfig.fsdd(), FeatureConfig.speech16k(), FeatureConfig(window="hamming"),
                                 FeatureConfig(top_db=None)], ids=["fsdd", "speech16k", "hamming", "no-top-db"])
def test_presets_match_librosa(cfg, rng):
    waves = rng.standard_normal((1, cfg.fixed_length)).astype(np.float32) * 0.1
    check_against_librosa(fd_mfcc(waves, cfg.sample_rate, cfg), waves, cfg)


def test_fsdd_clips_match_librosa(fsdd_files):
    waves = fsdd_batch(fsdd_files[:12])
    got = fd_mfcc(torch.from_numpy(waves), 8000)
    assert got.shape == (12, 3, 20, 101)
    check_against_librosa(got, waves, FeatureConfig())
    got64 = fd_mfcc(torch.from_numpy(waves.astype(np.float64)), 8000)
    check_against_librosa(got64, waves, FeatureConfig())


def test_top_db_floor_is_per_clip(rng):
    loud = rng.standard_normal(8000)
    quiet = rng.standard_normal(8000) * 1e-6
    both = fd_mfcc(np.stack([loud, quiet]).astype(np.float32), 8000)
    solo = fd_mfcc(quiet[None].astype(np.float32), 8000)
    assert torch.equal(both[1], solo[0])
    # a shared floor (librosa on a batch) would have moved the quiet clip: the check above can fail
    shared = librosa.power_to_db(np.stack([np.ones(4), np.full(4, 1e-12)]), top_db=80.0)
    assert shared[1].min() == pytest.approx(-80.0)


def test_fixed_length_pads_and_crops(rng):
    clip = rng.standard_normal(5000).astype(np.float32)
    long = np.concatenate([clip, rng.standard_normal(4000).astype(np.float32)])
    padded = np.pad(clip, (0, 3000))
    batch = fd_mfcc([clip, long[:8000], long], 8000)              # a list of different lengths
    assert batch.shape == (3, 3, 20, 101)
    torch.testing.assert_close(batch[0], fd_mfcc(padded, 8000)[0], rtol=0, atol=0)
    torch.testing.assert_close(batch[1], batch[2], rtol=0, atol=0)   # crop to 8000
    free = fd_mfcc([clip, long], 8000, FeatureConfig(fixed_length=None))
    assert free.shape == (2, 3, 20, 1 + long.size // 80)             # padded to the longest


def test_one_dimensional_input_and_mfcc_channel(rng):
    clip = rng.standard_normal(8000).astype(np.float32)
    feats = fd_mfcc(clip, 8000)
    assert feats.shape == (1, 3, 20, 101)
    torch.testing.assert_close(mfcc(clip, 8000), feats[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("n_frames", [1, 2, 5, 9, 10, 31])
@pytest.mark.parametrize("order", [1, 2])
def test_deltas_match_librosa_and_edge_rule(rng, n_frames, order):
    x = rng.standard_normal((3, 4, n_frames))
    got = deltas(torch.from_numpy(x), order=order, width=9).numpy()
    if n_frames >= 9:
        want = librosa.feature.delta(x, width=9, order=order)
    else:
        left = (9 - n_frames) // 2
        padded = np.pad(x, ((0, 0), (0, 0), (left, 9 - n_frames - left)), mode="edge")
        want = librosa.feature.delta(padded, width=9, order=order)[..., left:left + n_frames]
    np.testing.assert_allclose(got, want, **tol("deltas", "float64", "reference"))
    if n_frames >= 9:
        np.testing.assert_allclose(deltas(torch.from_numpy(x), order, 5).numpy(),
                                   librosa.feature.delta(x, width=5, order=order), **tol("deltas", "float64", "reference"))


def test_delta_of_order_two_is_not_delta_twice(rng):
    x = torch.from_numpy(rng.standard_normal((2, 40)))
    assert not torch.allclose(deltas(x, order=2), deltas(deltas(x, 1), 1), atol=1e-3)


@pytest.mark.parametrize("bad,match", [
    (dict(waves=np.zeros((2, 3, 10), np.float32)), "must be"),
    (dict(waves=np.zeros((1, 0), np.float32)), "empty"),
    (dict(waves=[np.zeros(10, np.float32), np.zeros(0, np.float32)]), "clip 1 is empty"),
    (dict(waves=np.array([[0.0, np.nan, 1.0], [0.0, 0.0, 0.0]], np.float32)), "clip 0 has non-finite"),
    (dict(waves=np.zeros(100, np.int16)), "int16"),
    (dict(waves=[]), "empty list"),
    (dict(waves=[np.zeros((2, 5), np.float32)]), r"waves\[0\] must be 1-D"),
    (dict(waves=np.zeros(100, np.float32), sample_rate=16000), "16000 Hz differs"),
    (dict(waves="not audio"), "tensor or numpy"),
])
def test_bad_input_is_a_clear_error(bad, match):
    kwargs = dict(sample_rate=8000) | bad
    with pytest.raises(ParameterError, match=match):
        fd_mfcc(kwargs.pop("waves"), **kwargs)


def test_non_finite_check_names_every_bad_clip_and_passes_huge_finite_ones():
    """The check sums each clip first: NaN/Inf anywhere (also +Inf and -Inf in one clip, whose sum is NaN) is
    found and named; finite samples whose sum overflows float32 are not an error (their power spectrum
    overflows float32 anyway, which the features show as they are)."""
    waves = np.zeros((4, 800), np.float32)
    waves[1, 5], waves[3, 7], waves[3, 9] = np.inf, np.inf, -np.inf
    with pytest.raises(ParameterError, match=r"clip 1 has non-finite samples \(NaN or Inf\); 2 such clips"):
        fd_mfcc(waves, 8000, FeatureConfig(fixed_length=None))
    huge = np.full((2, 800), 3e38, np.float32)                      # each clip's sum overflows to +Inf
    assert fd_mfcc(huge, 8000, FeatureConfig(fixed_length=None)).shape == (2, 3, 20, 11)   # no error raised


def test_bad_config_and_delta_arguments():
    with pytest.raises(ParameterError, match="n_mfcc"):
        fd_mfcc(np.zeros(100, np.float32), 8000, FeatureConfig(n_mfcc=50))
    with pytest.raises(ParameterError, match="order"):
        deltas(torch.zeros(3, 10), order=3)
    with pytest.raises(ParameterError, match="width"):
        deltas(torch.zeros(3, 10), width=4)


def test_half_precision_input_is_computed_in_float32(rng):
    clip = torch.from_numpy(rng.standard_normal(800).astype(np.float32))
    got = fd_mfcc(clip.half(), 8000, FeatureConfig(fixed_length=None))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, fd_mfcc(clip.half().float(), 8000, FeatureConfig(fixed_length=None)))


def test_forced_backend_is_used_or_refused(monkeypatch):
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    assert dispatch.get("fd_mfcc", torch.zeros(1, 10))[0] == "reference"
    monkeypatch.setenv("DDFAD_BACKEND", "triton")
    with pytest.raises(BackendUnavailableError, match="triton"):
        fd_mfcc(np.zeros(100, np.float32), 8000)
