"""CPU fast backends (``cpu``: C++ extension, ``numba``) of fd_mfcc / mfcc / griffin_lim.

Each backend is checked against the plain-torch reference and against librosa called per clip, with
the tolerances of docs/architecture.md section 4, on seeded random inputs and real FSDD clips. The C++ tests
skip when the extension is not built (CI builds it); the numba tests skip without numba.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa", reason="the oracle here is librosa")
soundfile = pytest.importorskip("soundfile")

from ddfad_fast.ops import dispatch, cpu, tables, reference  # noqa: E402
from ddfad_fast.audio import resample  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.ops.features import fd_mfcc as public_fd_mfcc, mfcc as public_mfcc  # noqa: E402
from ddfad_fast.ops.reconstruct import griffin_lim as public_griffin_lim  # noqa: E402
from stft_cases import CASES as STFT_CASES, params as stft_params, well_conditioned  # noqa: E402
from tolerances import tol  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:n_fft=.*is too large for input signal:UserWarning")

BACKENDS = [
    pytest.param("cpu", marks=pytest.mark.skipif(
        not cpu.extension_loaded(),
        reason="C++ extension ddfad_fast._C not built (pip install --no-build-isolation -e . builds it)")),
    pytest.param("numba", marks=pytest.mark.skipif(not cpu.numba_available(), reason="numba not installed")),
]
FD_MFCC = {"cpu": cpu.fd_mfcc_cpu, "numba": cpu.fd_mfcc_numba}
MFCC = {"cpu": cpu.mfcc_cpu, "numba": cpu.mfcc_numba}
GRIFFIN_LIM = {"cpu": cpu.griffin_lim_cpu, "numba": cpu.griffin_lim_numba}
PRESETS = {
    "fsdd": FeatureConfig.fsdd(),
    "speech16k": FeatureConfig.speech16k(),
    "hamming_no_top_db": FeatureConfig(window="hamming", top_db=None),
}
DTYPES = [torch.float32, torch.float64]
MFCC_TOL = {dtype: tol("mfcc", dtype) for dtype in DTYPES}
DELTA_TOL = tol("deltas", "float32")


# ----------------------------------------------------------------------------------------------------
# librosa oracles, one clip at a time
def _librosa_mfcc(clip: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """librosa's MFCC in float64 throughout (its mel filterbank defaults to float32: ask for float64)."""
    if clip.size > 1 or cfg.preemphasis == 0:
        y = librosa.effects.preemphasis(clip, coef=cfg.preemphasis)
    else:   # librosa needs 2 samples for its initial state 2 x[0] - x[1]; our rule takes x[1] = 0
        y = 3.0 * clip
    spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=cfg.window, center=True, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=spec, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                         fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney", dtype=np.float64)
    db = librosa.power_to_db(mel, ref=cfg.ref, amin=cfg.amin, top_db=cfg.top_db)
    return librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc)


def _librosa_delta(coeffs: np.ndarray, width: int, order: int) -> np.ndarray:
    """librosa.feature.delta; clips shorter than ``width`` frames use our documented edge rule
    (edge-pad to ``width`` frames, differentiate, crop back; see tables.delta_matrix)."""
    n_frames = coeffs.shape[-1]
    if n_frames >= width:
        return librosa.feature.delta(coeffs, width=width, order=order, mode="interp")
    left = (width - n_frames) // 2
    padded = np.pad(coeffs, ((0, 0), (left, width - n_frames - left)), mode="edge")
    return librosa.feature.delta(padded, width=width, order=order, mode="interp")[:, left:left + n_frames]


def _check_vs_librosa(got: torch.Tensor, waves: np.ndarray, cfg: FeatureConfig) -> None:
    """got: (B, 3, n_mfcc, T) from float64 or float32 waves; compared per clip with librosa in float64."""
    tol = MFCC_TOL[got.dtype]
    for b, clip in enumerate(waves.astype(np.float64)):
        want = _librosa_mfcc(clip, cfg)
        np.testing.assert_allclose(got[b, 0].double().numpy(), want, **tol, err_msg=f"MFCC of clip {b}")
        for order in (1, 2):
            np.testing.assert_allclose(got[b, order].double().numpy(), _librosa_delta(want, cfg.delta_width, order),
                                       **DELTA_TOL, err_msg=f"delta order {order} of clip {b}")


def _waves(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """White noise at levels spread over 60 dB, one level per clip."""
    return rng.standard_normal((batch, length)) * 10.0 ** rng.uniform(-3, 0, size=(batch, 1))


@pytest.fixture(scope="module")
def fsdd_clips(fsdd_files):
    """8 real FSDD clips padded / cropped to 1 s at 8 kHz, float64 (8, 8000)."""
    clips = []
    for path in fsdd_files[:8]:
        y, sr = soundfile.read(path, dtype="float64")
        assert sr == 8000
        clips.append(np.pad(y, (0, max(0, 8000 - y.size)))[:8000])
    return np.stack(clips)


# ----------------------------------------------------------------------------------------------------
# fd_mfcc / mfcc
SHAPES = [
    (1, None),      # B=1, the preset's fixed length
    (3, None),
    (2, 4001),      # odd length
    (2, 555),       # 7 frames: fewer than the 9-frame delta window
    (2, 100),       # shorter than one frame (n_fft)
    (1, 1),         # a single sample
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("batch,length", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fd_mfcc_matches_reference_and_librosa(rng, backend, preset, batch, length, dtype):
    cfg = PRESETS[preset]
    waves = _waves(rng, batch, length or cfg.fixed_length)
    tensor = torch.from_numpy(waves).to(dtype)
    got = FD_MFCC[backend](tensor, cfg)
    want = reference.fd_mfcc(tensor, cfg)
    assert got.shape == want.shape == (batch, 3, cfg.n_mfcc, cfg.n_frames(waves.shape[1]))
    assert got.dtype == dtype
    tol = MFCC_TOL[dtype]
    torch.testing.assert_close(got[:, 0], want[:, 0], **tol)
    torch.testing.assert_close(got[:, 1:], want[:, 1:], **DELTA_TOL)
    # librosa on the very samples the backend saw (float32 input: its float64 copy)
    _check_vs_librosa(got, tensor.double().numpy(), cfg)
    # op "mfcc" is channel 0 of fd_mfcc
    torch.testing.assert_close(MFCC[backend](tensor, cfg), got[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", stft_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fd_mfcc_every_geometry_matches_reference_and_librosa(rng, backend, case, dtype):
    """Odd and even n_fft / hop / win_length at 8 to 44.1 kHz: the frame count and every table come from tables."""
    cfg = case.config()
    tensor = torch.from_numpy(_waves(rng, 2, case.length)).to(dtype)
    got = FD_MFCC[backend](tensor, cfg)
    want = reference.fd_mfcc(tensor, cfg)
    assert got.shape == want.shape == (2, 3, cfg.n_mfcc, case.n_frames)
    torch.testing.assert_close(got[:, 0], want[:, 0], **MFCC_TOL[dtype])
    torch.testing.assert_close(got[:, 1:], want[:, 1:], **DELTA_TOL)
    _check_vs_librosa(got, tensor.double().numpy(), cfg)
    torch.testing.assert_close(MFCC[backend](tensor, cfg), got[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("case", stft_params())
def test_public_ops_on_the_default_path_give_the_reference_frames(monkeypatch, rng, case):
    """mfcc / fd_mfcc without a forced backend (the C++ one where built): the reference's frames and values."""
    monkeypatch.delenv("DDFAD_BACKEND", raising=False)
    cfg = case.config()
    waves = torch.from_numpy(_waves(rng, 2, case.length)).float()
    want = reference.fd_mfcc(waves.double(), cfg)
    got = public_fd_mfcc(waves, case.sample_rate, cfg)
    assert got.shape == want.shape == (2, 3, cfg.n_mfcc, cfg.n_frames(case.length))
    torch.testing.assert_close(got[:, 0].double(), want[:, 0], **MFCC_TOL[torch.float32])
    torch.testing.assert_close(got[:, 1:].double(), want[:, 1:], **DELTA_TOL)
    torch.testing.assert_close(public_mfcc(waves, case.sample_rate, cfg), got[:, 0], rtol=0, atol=0)


@pytest.mark.skipif(not cpu.extension_loaded(), reason="C++ extension ddfad_fast._C not built")
@pytest.mark.parametrize("case", stft_params())
def test_cpu_operator_meta_kernel_takes_the_frame_count(case):
    """The Meta kernel (torch.compile's shapes) returns the frame count it is given, as the CPU kernel does."""
    cfg = case.config()
    tab, t = cpu._feature_tensors(cfg, case.length, torch.float32)
    meta = {k: v.to("meta") for k, v in t.items()}
    for with_deltas, shape in ((True, (2, 3, cfg.n_mfcc, case.n_frames)), (False, (2, cfg.n_mfcc, case.n_frames))):
        out = torch.ops.ddfad.fd_mfcc(torch.empty(2, case.length, device="meta"), meta["window"], *tab.window_support,
                                      meta["mel_bands"], meta["mel_weights"], meta["dct"], meta["delta_start"],
                                      meta["delta_coef"], tab.n_frames, cfg.hop_length, 0.97, 1e-10, 0.0, 80.0,
                                      with_deltas, 0)
        assert tuple(out.shape) == shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["fsdd", "speech16k"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fd_mfcc_fsdd_clips_match_librosa(fsdd_clips, backend, preset, dtype):
    cfg = PRESETS[preset]
    clips = torch.from_numpy(fsdd_clips)
    if cfg.sample_rate != 8000:
        clips = resample(clips, 8000, cfg.sample_rate)[:, :cfg.fixed_length]
    tensor = clips.to(dtype).contiguous()
    got = FD_MFCC[backend](tensor, cfg)
    _check_vs_librosa(got, tensor.double().numpy(), cfg)
    torch.testing.assert_close(got, reference.fd_mfcc(tensor, cfg), **MFCC_TOL[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_top_db_is_per_clip(rng, backend, dtype):
    """A quiet clip batched with a loud one gives exactly its solo result (librosa 0.11 shares one floor)."""
    cfg = FeatureConfig()
    loud = rng.standard_normal(8000) * 10.0
    quiet = rng.standard_normal(8000) * 1e-3            # 80 dB below: a shared floor would flatten it
    batch = torch.from_numpy(np.stack([loud, quiet, loud * 0.5])).to(dtype)
    both = FD_MFCC[backend](batch, cfg)
    solo = FD_MFCC[backend](batch[1:2].clone(), cfg)
    assert torch.equal(both[1:2], solo)
    # with the loud clip's floor the quiet clip's MFCC 1.. would stay below 0.2; with its own they reach ~50
    assert both[1, 0, 1:].abs().max() > 10.0


@pytest.fixture
def fresh_tables():
    """Clear dsp's cached tables before and after a test that perturbs the dsp constants."""
    tables.clear_caches()
    yield
    tables.clear_caches()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constant", ["mel", "delta"])
def test_perturbed_constant_is_caught(rng, monkeypatch, fresh_tables, backend, constant):
    """The comparison with librosa is tight enough to notice a 0.1% error in one constant."""
    cfg = FeatureConfig()
    waves = _waves(rng, 2, 8000)
    if constant == "mel":
        bank = tables.mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.fmin), cfg.f_max).copy()
        bank[5, np.flatnonzero(bank[5])[0]] *= 1.001
        monkeypatch.setattr(tables, "mel_filterbank", lambda *args: bank)
    else:
        original = tables.delta_matrix

        def perturbed(n_frames, width, order):
            matrix = original(n_frames, width, order).copy()
            matrix[n_frames // 2, n_frames // 2 + 1] *= 1.001
            return matrix
        monkeypatch.setattr(tables, "delta_matrix", perturbed)
    got = FD_MFCC[backend](torch.from_numpy(waves), cfg)
    with pytest.raises(AssertionError):
        _check_vs_librosa(got, waves, cfg)


# ----------------------------------------------------------------------------------------------------
# griffin_lim
def _phases(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit phasors as librosa.griffinlim(init="random", random_state=<that Generator>) draws them."""
    return np.exp(2j * np.pi * rng.random(size=shape))


def _magnitude(clip: np.ndarray, n_fft: int, hop: int, win: int, window: str) -> np.ndarray:
    return np.abs(librosa.stft(clip, n_fft=n_fft, hop_length=hop, win_length=win, window=window, center=True,
                               pad_mode="constant"))


GLA_CASES = [(c.n_fft, c.hop_length, c.win_length, c.window, c.length) for c in STFT_CASES] + [
    (512, 128, 320, "hann", 16000),     # speech16k preset
    (256, 80, 160, "hamming", 4001),    # odd length
    (64, 40, 64, "hann", 50),           # hop > n_fft / 2, 2 frames
]
GLA_IDS = [c.name for c in STFT_CASES] + ["speech16k", "hamming-4001", "hop-over-half"]
# float64 claims float64 arithmetic: librosa (float64 throughout) and the reference agree to ~1e-11 of the
# signal's peak, so 1e-10 of it catches a float32 operation inside a float64 path (that costs ~1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_fft,hop,win,window,length", GLA_CASES, ids=GLA_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_griffin_lim_matches_librosa(fsdd_clips, backend, n_fft, hop, win, window, length, dtype):
    clip = fsdd_clips[3]
    if length > 8000:
        clip = resample(torch.from_numpy(clip), 8000, 16000).numpy()
    clip = np.resize(clip, length)
    mag = _magnitude(clip, n_fft, hop, win, window)
    n_iter = 8
    want = librosa.griffinlim(mag, n_iter=n_iter, hop_length=hop, win_length=win, n_fft=n_fft, window=window,
                              center=True, length=length, pad_mode="constant", momentum=0.99, init="random",
                              random_state=np.random.default_rng(7))
    phase = torch.from_numpy(_phases(np.random.default_rng(7), mag.shape))[None]
    got = GRIFFIN_LIM[backend](torch.from_numpy(mag)[None].to(dtype).contiguous(), n_fft, hop, win, window, n_iter,
                               0.99, phase.to(dtype.to_complex()), length)
    assert got.shape == (1, length) and got.dtype == dtype
    got = got[0].double().numpy()
    if dtype == torch.float32:
        assert np.isfinite(got).all()
        keep = well_conditioned(n_fft, hop, win, window, length)
        got, want = got[keep], want[keep]
    np.testing.assert_allclose(got, want, **tol("griffin_lim", dtype, "any", np.abs(want).max()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch,n_fft,hop,win,window,length",
                         [(2, c.n_fft, c.hop_length, c.win_length, c.window, c.length) for c in STFT_CASES]
                         + [(1, 256, 80, 160, "hann", 8000), (3, 256, 80, 160, "hann", 1001),
                            (2, 64, 16, 48, "hann", 333)],
                         ids=[c.name for c in STFT_CASES] + ["B1", "B3-1001", "64-333"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_griffin_lim_matches_reference(backend, batch, n_fft, hop, win, window, length, dtype):
    gen = torch.Generator().manual_seed(11)
    n_frames = tables.n_frames(length, n_fft, hop)
    mag = torch.rand(batch, n_fft // 2 + 1, n_frames, generator=gen, dtype=dtype)
    phase = torch.polar(torch.ones_like(mag), 2 * np.pi * torch.rand(mag.shape, generator=gen, dtype=dtype))
    got = GRIFFIN_LIM[backend](mag, n_fft, hop, win, window, 6, 0.99, phase, length)
    want = reference.griffin_lim(mag, n_fft, hop, win, window, 6, 0.99, phase, length)
    torch.testing.assert_close(got, want, **tol("griffin_lim", dtype, "any" if dtype == torch.float64 else "cpu",
                                                want.abs().max().item()))
    # one clip alone gives what it gives inside the batch
    torch.testing.assert_close(GRIFFIN_LIM[backend](mag[-1:], n_fft, hop, win, window, 6, 0.99, phase[-1:], length),
                               got[-1:], rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_griffin_lim_random_phase_converges_like_librosa(fsdd_clips, backend):
    """32 iterations in float32 from random phases (librosa's draw): spectral convergence within 0.3 dB of
    librosa's, per clip, and far below the starting point's."""
    from ddfad_fast.audio.metrics import spectral_convergence
    n_fft, hop, win = 256, 80, 160
    mags = np.stack([_magnitude(clip, n_fft, hop, win, "hann") for clip in fsdd_clips[:4]]).astype(np.float32)
    phases = np.stack([_phases(np.random.default_rng(seed), mags.shape[1:]) for seed in range(4)])
    ours = GRIFFIN_LIM[backend](torch.from_numpy(mags), n_fft, hop, win, "hann", 32, 0.99,
                                torch.from_numpy(phases).to(torch.complex64), 8000)
    theirs = np.stack([librosa.griffinlim(mag, n_iter=32, hop_length=hop, win_length=win, n_fft=n_fft, length=8000,
                                          momentum=0.99, random_state=np.random.default_rng(seed))
                       for seed, mag in enumerate(mags)])
    start = reference.istft(torch.from_numpy(mags * phases), n_fft, hop, win, "hann", 8000)
    sc_ours = spectral_convergence(mags, ours, n_fft, hop, win)
    sc_theirs = spectral_convergence(mags, torch.from_numpy(theirs), n_fft, hop, win)
    sc_start = spectral_convergence(mags, start, n_fft, hop, win)
    assert torch.all((sc_ours - sc_theirs).abs() < 0.3), (sc_ours, sc_theirs)
    assert torch.all(sc_ours < sc_start - 10), (sc_ours, sc_start)


@pytest.mark.parametrize("backend", BACKENDS)
def test_perturbed_envelope_is_caught(fsdd_clips, monkeypatch, backend):
    """The Griffin-Lim comparison with librosa notices a 0.1% error in one sample of the inverse envelope."""
    n_fft, hop, win, length = 256, 80, 160, 8000
    mag = _magnitude(fsdd_clips[3], n_fft, hop, win, "hann")
    loudest = n_fft // 2 + int(np.abs(fsdd_clips[3]).argmax())      # the envelope sample of the loudest sample
    original = tables.inverse_envelope

    def perturbed(*args):
        envelope = original(*args).copy()
        envelope[loudest] *= 1.001
        return envelope
    monkeypatch.setattr(tables, "inverse_envelope", perturbed)
    want = librosa.griffinlim(mag, n_iter=8, hop_length=hop, win_length=win, n_fft=n_fft, length=length,
                              momentum=0.99, random_state=np.random.default_rng(7))
    phase = torch.from_numpy(_phases(np.random.default_rng(7), mag.shape))[None]
    got = GRIFFIN_LIM[backend](torch.from_numpy(mag)[None], n_fft, hop, win, "hann", 8, 0.99, phase, length)
    assert np.abs(got[0].numpy() - want).max() > 5e-5


@pytest.mark.skipif(not cpu.extension_loaded(), reason="C++ extension ddfad_fast._C not built")
@pytest.mark.parametrize("case", stft_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cpu_gla_operators_match_torch(case, dtype):
    """torch.ops.ddfad.overlap_add / gla_step (shared schemas with the CUDA build) on the CPU."""
    gen = torch.Generator().manual_seed(3)
    n_fft, hop, win_length, window, length, batch = (case.n_fft, case.hop_length, case.win_length, case.window,
                                                     case.length + 1, 2)
    n_frames = tables.n_frames(length, n_fft, hop)
    spec = torch.randn(batch, n_fft // 2 + 1, n_frames, generator=gen, dtype=dtype.to_complex())
    win = tables.as_tensor(tables.window(window, win_length, n_fft), dtype)
    lo, hi = tables.window_support(window, win_length, n_fft)
    inv_env = tables.as_tensor(tables.inverse_envelope(window, win_length, n_fft, hop, n_frames), dtype)
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft).contiguous()
    signal = torch.ops.ddfad.overlap_add(frames, win, lo, hi, inv_env, hop, length, False)
    close = tol("istft", dtype, "cpu")
    torch.testing.assert_close(signal, reference.istft(spec, n_fft, hop, win_length, window, length), **close)
    reframed = torch.ops.ddfad.overlap_add(frames, win, lo, hi, inv_env, hop, length, True)
    padded = torch.nn.functional.pad(signal, (n_fft // 2, n_fft // 2 + n_fft))
    want = padded.unfold(-1, n_fft, hop)[:, :n_frames] * win
    torch.testing.assert_close(reframed, want, **close)
    x = torch.empty_like(spec)
    cur, prev = torch.randn_like(spec), torch.randn_like(spec)
    mag = torch.rand(spec.shape, generator=gen, dtype=dtype)
    torch.ops.ddfad.gla_step(x, cur, prev, mag, 0.99)
    update = cur - 0.99 / 1.99 * prev
    torch.testing.assert_close(x, mag * update / (update.abs() + torch.finfo(dtype).tiny))


# ----------------------------------------------------------------------------------------------------
# dispatch
@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_backend_dispatches_here(monkeypatch, rng, backend):
    monkeypatch.setenv("DDFAD_BACKEND", backend)
    waves = torch.from_numpy(_waves(rng, 2, 8000)).float()
    for op, fn in (("fd_mfcc", FD_MFCC), ("mfcc", MFCC), ("griffin_lim", GRIFFIN_LIM)):
        assert dispatch.get(op, waves) == (backend, fn[backend])
    assert torch.equal(public_fd_mfcc(waves, 8000), FD_MFCC[backend](waves, FeatureConfig()))
    mag = reference.stft(waves, 256, 80, 160, "hann").abs()
    gen = torch.Generator().manual_seed(0)
    out = public_griffin_lim(mag, 256, 80, 160, n_iter=2, length=8000, generator=gen)
    turns = torch.rand(mag.shape, generator=torch.Generator().manual_seed(0))
    phase = torch.polar(torch.ones_like(turns), 2 * np.pi * turns)
    scale = mag.amax(dim=(1, 2), keepdim=True)          # the public op iterates on peak-1 magnitudes
    want = GRIFFIN_LIM[backend](mag / scale, 256, 80, 160, "hann", 2, 0.99, phase, 8000) * scale[:, :, 0]
    assert torch.equal(out, want)
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    assert dispatch.get("fd_mfcc", waves)[0] == "reference"
    assert dispatch.get("griffin_lim", mag)[0] == "reference"


@pytest.mark.skipif(not cpu.extension_loaded(), reason="C++ extension ddfad_fast._C not built")
def test_default_order_puts_the_measured_winner_first(monkeypatch):
    """C++ first; numba (slower than C++ everywhere) as the no-extension fallback of griffin_lim only (it
    beats the reference there, not for fd_mfcc at B=64); the reference last."""
    monkeypatch.delenv("DDFAD_BACKEND", raising=False)
    numba = ["numba"] if cpu.numba_available() else []
    for op in ("fd_mfcc", "mfcc", "griffin_lim"):
        for dtype in DTYPES:
            want = ["cpu"] + (numba if op == "griffin_lim" else []) + ["reference"]
            assert dispatch.candidates(op, "cpu", dtype) == want


def test_missing_numba_or_extension_falls_back_cleanly():
    """Without numba the C++ backend still registers; without the extension the reference runs, and forcing
    ``cpu`` names the missing build (checked in a fresh interpreter with the modules blocked)."""
    code = ("import os, sys; sys.modules['numba'] = None\n"
            "import ddfad_fast, torch\n"
            "from ddfad_fast.ops import cpu, dispatch\n"
            "from ddfad_fast.errors import BackendUnavailableError\n"
            "found = dispatch.candidates('fd_mfcc', 'cpu', torch.float32)\n"
            "assert 'numba' not in found and found[-1] == 'reference', found\n"
            "assert ('cpu' in found) == cpu.extension_loaded(), found\n"
            "sys.modules['ddfad_fast._C'] = None\n"
            "cpu.extension_loaded.cache_clear()\n"
            "for op in ('fd_mfcc', 'mfcc', 'griffin_lim'):\n"
            "    assert dispatch.candidates(op, 'cpu', torch.float32) == ['reference'], op\n"
            "os.environ['DDFAD_BACKEND'] = 'cpu'\n"
            "try:\n"
            "    dispatch.get('fd_mfcc', torch.zeros(1, 10))\n"
            "    raise SystemExit('forcing an unavailable backend must raise')\n"
            "except BackendUnavailableError as exc:\n"
            "    assert \"'cpu'\" in str(exc), exc\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DDFAD_REQUIRE_EXT", "DDFAD_BACKEND")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
