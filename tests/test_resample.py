"""Resampling: soxr (HQ) for CPU data, the torch windowed sinc where a gradient or a GPU needs it, one length rule."""
import numpy as np
import pytest
import torch

soxr = pytest.importorskip("soxr")

from ddfad_fast.audio import files  # noqa: E402
from ddfad_fast.audio.files import resample, resample_array, resample_sinc, resampled_length  # noqa: E402

PAIRS = [(16000, 8000), (44100, 16000), (48000, 8000), (8000, 16000), (22050, 16000), (8000, 11025)]


def _tones(sr: int, seconds: float = 0.5, freqs=(440.0, 1500.0, 3100.0), n=None) -> np.ndarray:
    t = np.arange(int(sr * seconds) if n is None else n) / sr
    return sum(np.sin(2 * np.pi * f * t + k) / (k + 1) for k, f in enumerate(freqs))


@pytest.mark.parametrize("orig,target", PAIRS)
def test_cpu_tensors_and_arrays_resample_with_soxr_hq(orig, target):
    x = np.random.default_rng(0).standard_normal((3, orig // 4 + 7)).astype(np.float32)
    want = np.stack([soxr.resample(row, orig, target, quality="HQ") for row in x])
    np.testing.assert_array_equal(resample_array(x, orig, target), want)
    got = resample(torch.from_numpy(x), orig, target)
    assert got.dtype == torch.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)
    assert resample_array(x.astype(np.float64), orig, target).dtype == np.float64


@pytest.mark.parametrize("length", [1, 2, 3, 7, 101, 441, 16001, 44099])
@pytest.mark.parametrize("orig,target", PAIRS)
def test_both_paths_give_soxrs_length(length, orig, target):
    x = np.zeros(length, dtype=np.float32)
    n = soxr.resample(x, orig, target).shape[0]
    assert resampled_length(length, orig, target) == n
    assert resample_array(x, orig, target).shape == (n,)
    assert resample_sinc(torch.from_numpy(x), orig, target).shape == (n,)


@pytest.mark.parametrize("orig,target", PAIRS)
def test_sinc_path_agrees_with_soxr_on_band_limited_audio(orig, target):
    """Away from the clip's edges both are within soxr HQ's own error of the exact tones (3e-4 here)."""
    x = _tones(orig)
    exact = _tones(target, n=resampled_length(x.size, orig, target))
    a = resample_array(x, orig, target)
    b = resample_sinc(torch.from_numpy(x), orig, target).numpy()
    inner = slice(300, -300)
    err_soxr = np.abs(a - exact)[inner].max()
    assert err_soxr < 3e-4
    assert np.abs(b - exact)[inner].max() < max(3e-4, 2 * err_soxr)


def test_gradients_and_non_cpu_tensors_take_the_torch_path(monkeypatch):
    calls = []
    real = files.resample_sinc
    monkeypatch.setattr(files, "resample_sinc", lambda *a: calls.append(a) or real(*a))
    x = torch.randn(2, 800, dtype=torch.float64, requires_grad=True)
    y = files.resample(x, 8000, 16000)
    assert calls and y.requires_grad and y.shape == (2, 1600)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    calls.clear()
    files.resample(x.detach(), 8000, 16000)
    assert not calls                        # the same tensor without a gradient: soxr
    files.resample(x.detach().half(), 8000, 16000)
    assert calls                            # dtypes soxr does not take


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_tensors_stay_on_the_gpu():
    x = torch.from_numpy(_tones(16000)).float().cuda()
    y = resample(x, 16000, 8000)
    assert y.is_cuda
    want = resample_array(x.cpu().numpy(), 16000, 8000)
    assert np.abs(y.cpu().numpy() - want)[300:-300].max() < 5e-4


def test_load_audio_resamples_with_soxr(tmp_path):
    sf = pytest.importorskip("soundfile")
    from ddfad_fast import load_audio
    x = _tones(44100)
    sf.write(tmp_path / "a.wav", x, 44100, subtype="FLOAT")
    wave, sr = load_audio(tmp_path / "a.wav", sample_rate=16000)
    want = soxr.resample(x.astype(np.float32), 44100, 16000, quality="HQ")
    assert sr == 16000 and wave.dtype == torch.float32
    np.testing.assert_allclose(wave.numpy(), want, atol=1e-6)
    wave64, _ = load_audio(tmp_path / "a.wav", sample_rate=16000, dtype=torch.float64)
    np.testing.assert_allclose(wave64.numpy(), soxr.resample(x, 44100, 16000, quality="HQ"), atol=1e-12)
