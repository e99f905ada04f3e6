"""Both GPU backends (triton, cuda) of griffin_lim on a real CUDA device, at the tolerances of
docs/architecture.md section 4: float64 at 1e-10 of the peak, float32 on the samples the window envelope
conditions well, the CUDA kernel variants, determinism, convergence, CUDA graph capture, torch.compile.
Skipped cleanly on machines without CUDA."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from ddfad_fast.ops import reference as ref  # noqa: E402
from gpu_checks import GPU_BACKENDS, capture, gla_case, need, run_gla  # noqa: E402
from stft_cases import CASES as STFT_CASES, well_conditioned  # noqa: E402
from tolerances import tol  # noqa: E402


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("n_fft,hop,win_length,window,length",
                         [(512, 128, 320, "hann", 4000), (400, 100, 400, "hann", 3001), (255, 64, 200, "hann", 2000)]
                         + [(c.n_fft, c.hop_length, c.win_length, c.window, c.length) for c in STFT_CASES],
                         ids=["speech16k", "n_fft-400", "odd-n_fft"] + [c.name for c in STFT_CASES])
def test_griffin_lim_matches_reference(backend, dtype, n_fft, hop, win_length, window, length):
    fn = need("griffin_lim", backend, dtype)
    mag, phase = gla_case(n_fft, hop, win_length, length, window=window)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, window, 8, 0.99, phase, length)
    got = run_gla(fn, mag, phase, n_fft, hop, win_length, length, 8, dtype, window=window)
    assert got.dtype == dtype and got.shape == want.shape
    got = got.cpu().double()
    if dtype == torch.float32:          # float32 on the samples the window envelope conditions well (stft_cases)
        assert torch.isfinite(got).all()
        keep = torch.from_numpy(well_conditioned(n_fft, hop, win_length, window, length))
        got, want = got[:, keep], want[:, keep]
    torch.testing.assert_close(got, want, **tol("griffin_lim", dtype, "any", want.abs().max().item()))


@pytest.mark.parametrize("tile_frames,max_radix", [(1, 2), (3, 4), (8, 8), (16, 16), (0, 0), (-1, 0)],
                         ids=["1x2", "3x4", "8x8", "16x16", "defaults", "cuFFT-path"])
def test_cuda_griffin_lim_variants_agree(tile_frames, max_radix):
    """Fused kernel: frames per block x largest FFT pass (16 frames in float64 needs > 48 KB shared memory)."""
    fn = need("griffin_lim", "cuda", torch.float64)
    mag, phase = gla_case(512, 128, 320, 4000)
    want = ref.griffin_lim(mag, 512, 128, 320, "hann", 4, 0.99, phase, 4000)
    got = run_gla(fn, mag, phase, 512, 128, 320, 4000, 4, torch.float64, tile_frames=tile_frames,
                   max_radix=max_radix)
    torch.testing.assert_close(got.cpu(), want, **tol("griffin_lim", "float64", "any"))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_is_deterministic(backend):
    fn = need("griffin_lim", backend)
    mag, phase = gla_case(512, 128, 320, 16000, batch=8)
    runs = [run_gla(fn, mag, phase, 512, 128, 320, 16000, 4, torch.float32) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_random_phase_convergence_close_to_reference(backend):
    """Spectral convergence after 32 iterations within 0.3 dB of the reference's (docs/architecture.md section 4)."""
    from ddfad_fast.audio.metrics import spectral_convergence

    fn = need("griffin_lim", backend)
    mag, phase = gla_case(512, 128, 320, 16000, batch=4, seed=11)
    ours = run_gla(fn, mag, phase, 512, 128, 320, 16000, 32, torch.float32).cpu().double()
    theirs = ref.griffin_lim(mag, 512, 128, 320, "hann", 32, 0.99, phase, 16000)
    sc_ours = spectral_convergence(mag, ours, 512, 128, 320)
    sc_ref = spectral_convergence(mag, theirs, 512, 128, 320)
    assert (sc_ours - sc_ref).abs().max() < 0.3, (sc_ours, sc_ref)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_large_batch_matches_reference(backend):
    fn = need("griffin_lim", backend)
    mag, phase = gla_case(512, 128, 320, 16000, batch=1024, seed=12)
    got = run_gla(fn, mag, phase, 512, 128, 320, 16000, 3, torch.float32)
    pick = [0, 511, 1023]
    want = ref.griffin_lim(mag[pick], 512, 128, 320, "hann", 3, 0.99, phase[pick], 16000)
    torch.testing.assert_close(got[pick].cpu().double(), want, **tol("griffin_lim", "float32", "any", want.abs().max().item()))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_cuda_graph_capture_32_iterations(backend):
    gla = need("griffin_lim", backend)
    mag, phase = gla_case(512, 128, 320, 16000, batch=16)
    mag, phase = mag.float().cuda(), phase.to(torch.complex64).cuda()
    run = lambda: gla(mag, 512, 128, 320, "hann", 32, 0.99, phase, 16000)  # noqa: E731
    eager = run()
    graph, captured = capture(run)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, atol=1e-5, rtol=1e-5)
    mag.mul_(0.5)                                  # replays read the captured inputs' current contents
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, 0.5 * eager, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_torch_compile_fullgraph(backend):
    fn = need("griffin_lim", backend)
    mag, phase = gla_case(256, 64, 256, 4000)
    mag, phase = mag.float().cuda(), phase.to(torch.complex64).cuda()
    compiled = torch.compile(lambda m, p: fn(m, 256, 64, 256, "hann", 4, 0.99, p, 4000) * 2.0, fullgraph=True)
    torch.testing.assert_close(compiled(mag, phase), 2.0 * fn(mag, 256, 64, 256, "hann", 4, 0.99, phase, 4000),
                               atol=1e-5, rtol=1e-5)
