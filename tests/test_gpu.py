"""GPU backends on a real CUDA device: each vs librosa semantics, CUDA graph capture, torch.compile.

Skipped cleanly on machines without CUDA.
"""
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
librosa = pytest.importorskip("librosa")

from ddfad_fast import backends, gpu_backend as gb  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402

GLA_BACKENDS = ["triton", "cuda"]


def _need(op, backend):
    if backend not in backends.candidates(op, "cuda"):
        pytest.skip(f"backend {backend!r} for {op!r} unavailable here")
    return backends.get(op, "cuda", backend=backend)[1]


def _librosa_fd_mfcc(y, cfg):
    y = librosa.effects.preemphasis(y, coef=cfg.preemphasis)
    power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                window=cfg.window, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=cfg.top_db), n_mfcc=cfg.n_mfcc)
    return np.stack([mfcc, librosa.feature.delta(mfcc, order=1), librosa.feature.delta(mfcc, order=2)])


@pytest.mark.parametrize("cfg", [FeatureConfig.fsdd(), FeatureConfig.speech16k()], ids=["fsdd", "speech16k"])
def test_fd_mfcc_triton_matches_librosa(cfg):
    fn = _need("fd_mfcc", "triton")
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((3, cfg.fixed_length)).astype(np.float32)
    waves[2] *= 1e-5
    got = fn(torch.tensor(waves, device="cuda"), cfg).cpu().numpy()
    for b in range(3):
        want = _librosa_fd_mfcc(waves[b], cfg)
        np.testing.assert_allclose(got[b, 0], want[0], atol=5e-4, rtol=1e-5)
        np.testing.assert_allclose(got[b, 1:], want[1:], atol=1e-4)


def _gla_case(dtype):
    y = np.random.default_rng(1).standard_normal(4000)
    S = np.abs(librosa.stft(y, n_fft=256, hop_length=64, pad_mode="constant"))
    phase = np.exp(2j * np.pi * np.random.default_rng(2).random(S.shape))
    want = librosa.griffinlim(S, n_iter=8, hop_length=64, n_fft=256, momentum=0.99, init="random",
                              random_state=np.random.default_rng(2))
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    mag = torch.tensor(S[None], dtype=dtype, device="cuda")
    return mag, torch.tensor(phase[None], dtype=cdtype, device="cuda"), want


@pytest.mark.parametrize("backend", GLA_BACKENDS)
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 5e-5), (torch.float32, 1e-4)])
def test_griffin_lim_matches_librosa(backend, dtype, atol):
    fn = _need("griffin_lim", backend)
    mag, phase, want = _gla_case(dtype)
    got = fn(mag, 256, 64, 256, "hann", 8, 0.99, phase, None, None)
    np.testing.assert_allclose(got[0].cpu().numpy(), want, atol=atol * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("backend", GLA_BACKENDS)
def test_griffin_lim_cuda_graph_capture_32_iterations(backend):
    fn = _need("griffin_lim", backend)
    mag, phase, _ = _gla_case(torch.float32)
    eager = fn(mag, 256, 64, 256, "hann", 32, 0.99, phase, None, None)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(mag, 256, 64, 256, "hann", 32, 0.99, phase, None, None)   # warm-up: constants, kernels, cuFFT plans
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fn(mag, 256, 64, 256, "hann", 32, 0.99, phase, None, None)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", GLA_BACKENDS)
def test_griffin_lim_torch_compile_fullgraph(backend):
    fn = _need("griffin_lim", backend)
    mag, phase, _ = _gla_case(torch.float32)
    compiled = torch.compile(lambda m, p: fn(m, 256, 64, 256, "hann", 4, 0.99, p, None, None), fullgraph=True)
    torch.testing.assert_close(compiled(mag, phase), fn(mag, 256, 64, 256, "hann", 4, 0.99, phase, None, None),
                               atol=1e-5, rtol=1e-5)


def test_fd_mfcc_torch_compile_fullgraph():
    fn = _need("fd_mfcc", "triton")
    cfg = FeatureConfig.fsdd()
    waves = torch.randn(4, 8000, device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    compiled = torch.compile(lambda w: fn(w, cfg) * 1.0, fullgraph=True)
    torch.testing.assert_close(compiled(waves), fn(waves, cfg), atol=1e-5, rtol=0)


def test_no_tf32_in_ops():
    assert not torch.backends.cuda.matmul.allow_tf32
    assert gb.feature_constants(FeatureConfig(), 101, torch.device("cuda"))[1].dtype == torch.float32
