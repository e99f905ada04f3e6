"""CPU fast backends (``cpu``: C++ extension, ``numba``) of griffin_lim against librosa.griffinlim and the
plain-torch reference (same phases), with the tolerances of tests/tolerances.py, and the C++ Griffin-Lim
operators (overlap_add, gla_step) against torch. The C++ tests skip when the extension is not built; the numba
tests skip without numba.
"""
import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa", reason="the oracle here is librosa")
soundfile = pytest.importorskip("soundfile")

from ddfad_fast.ops import cpu, tables, reference  # noqa: E402
from ddfad_fast.audio import resample  # noqa: E402
from helpers import CPU_BACKENDS as BACKENDS, CPU_GRIFFIN_LIM as GRIFFIN_LIM, DTYPES  # noqa: E402
from stft_cases import CASES as STFT_CASES, params as stft_params, well_conditioned  # noqa: E402
from tolerances import tol  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:n_fft=.*is too large for input signal:UserWarning")


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

