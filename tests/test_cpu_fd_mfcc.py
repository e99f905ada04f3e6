"""CPU fast backends (``cpu``: C++ extension, ``numba``) of fd_mfcc / mfcc against the plain-torch reference and
librosa called per clip, with the tolerances of tests/tolerances.py (docs/architecture.md section 4), on seeded
random inputs and real FSDD clips. The C++ tests skip when the extension is not built (CI builds it); the numba
tests skip without numba. Griffin-Lim: tests/test_cpu_griffin_lim.py; dispatch: tests/test_cpu_dispatch.py.
"""
import numpy as np
import pytest
import torch

librosa = pytest.importorskip("librosa", reason="the oracle here is librosa")
soundfile = pytest.importorskip("soundfile")

from ddfad_fast.ops import cpu, tables, reference  # noqa: E402
from ddfad_fast.audio import resample  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.ops.features import fd_mfcc as public_fd_mfcc, mfcc as public_mfcc  # noqa: E402
from helpers import CPU_BACKENDS as BACKENDS, CPU_FD_MFCC as FD_MFCC, CPU_MFCC as MFCC, DTYPES, noise_waves  # noqa: E402
from stft_cases import params as stft_params  # noqa: E402
from tolerances import tol  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:n_fft=.*is too large for input signal:UserWarning")

PRESETS = {
    "fsdd": FeatureConfig.fsdd(),
    "speech16k": FeatureConfig.speech16k(),
    "hamming_no_top_db": FeatureConfig(window="hamming", top_db=None),
}
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
    waves = noise_waves(rng, batch, length or cfg.fixed_length)
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
    tensor = torch.from_numpy(noise_waves(rng, 2, case.length)).to(dtype)
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
    waves = torch.from_numpy(noise_waves(rng, 2, case.length)).float()
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
    waves = noise_waves(rng, 2, 8000)
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

