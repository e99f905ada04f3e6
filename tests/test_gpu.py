"""Both GPU backends (triton, cuda) of both ops on a real CUDA device, at the tolerances of
docs/architecture.md section 4.

The oracle is ddfad_fast.ops.reference run in float64 on the CPU (itself tested against librosa); where
librosa is importable the FSDD-preset features are also compared with it directly. Also: CUDA graph
capture of 32 Griffin-Lim iterations, torch.compile(fullgraph=True), no TF32 inside our ops, float64
Griffin-Lim, run-to-run determinism. Skipped cleanly on machines without CUDA.
"""
import math

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from ddfad_fast.ops import dispatch, gpu_features, reference as ref  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from stft_cases import CASES as STFT_CASES, params as stft_params, well_conditioned  # noqa: E402

GPU_BACKENDS = ["triton", "cuda"]


def _need(op: str, backend: str, dtype: torch.dtype = torch.float32):
    if backend not in dispatch.candidates(op, "cuda", dtype):
        pytest.skip(f"backend {backend!r} of {op!r} unavailable here for {dtype}")
    return dispatch.get(op, "cuda", backend=backend)[1]


def _waves(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    waves = torch.randn(batch, length, generator=g) * 0.3
    if batch > 1:
        waves[1] *= 1e-5                               # a quiet clip beside loud ones: per-clip top_db
    return waves


def _check_fd_mfcc(got: torch.Tensor, want: torch.Tensor, width: int = 9) -> None:
    """The tolerances of docs/architecture.md section 4: MFCC within 5e-4 + 1e-5 |MFCC| of the reference;
    the delta channels within 1e-4 + 1e-5 * (largest |MFCC| of that clip and coefficient) of the
    reference deltas *of the kernel's own MFCCs* (float32 rounding grows with the size of the values
    filtered: c0 of a -100 dB clip is near -700) and, end to end, within the MFCC tolerance (a
    Savitzky-Golay filter of L1 norm < 1 cannot amplify the MFCC's error)."""
    got = got.double().cpu()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[:, 0], want[:, 0], atol=5e-4, rtol=1e-5)
    scale = got[:, 0].abs().amax(dim=-1, keepdim=True)
    for order in (1, 2):
        err = (got[:, order] - ref.deltas(got[:, 0], order, width)).abs()
        assert (err <= 1e-4 + 1e-5 * scale).all(), f"delta order {order}: max error {err.max().item():.3g}"
        err = (got[:, order] - want[:, order]).abs()
        assert (err <= 5e-4 + 1e-5 * scale).all(), f"delta order {order} vs reference: {err.max().item():.3g}"


# ---- fd_mfcc -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_mfcc_on_the_gpu_is_the_first_fd_mfcc_channel(backend):
    """mfcc has GPU backends (no plain-torch run by default on CUDA) equal to fd_mfcc's MFCC channel."""
    cfg = FeatureConfig.fsdd()
    waves = _waves(3, 8000, 7).cuda()
    got = _need("mfcc", backend)(waves, cfg)
    assert torch.equal(got, _need("fd_mfcc", backend)(waves, cfg)[:, 0])
    torch.testing.assert_close(got.double().cpu(), ref.mfcc(waves.double().cpu(), cfg), atol=5e-4, rtol=1e-5)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("cfg,length", [(FeatureConfig.fsdd(), 8000), (FeatureConfig.speech16k(), 16000),
                                        (FeatureConfig(fixed_length=None), 1203),
                                        (FeatureConfig(fixed_length=None, top_db=None), 300),
                                        (FeatureConfig(fixed_length=None), 50),
                                        (FeatureConfig(fixed_length=None, n_mels=48, n_mfcc=13, delta_width=5,
                                                       window="hamming", n_fft=400, win_length=400), 4001)],
                         ids=["fsdd", "speech16k", "1203", "short-no-top-db", "one-frame", "odd-sizes"])
def test_fd_mfcc_matches_reference(backend, cfg, length):
    fn = _need("fd_mfcc", backend)
    waves = _waves(3, length, seed=length)
    got = fn(waves.cuda(), cfg)
    assert got.shape == (3, 3, cfg.n_mfcc, cfg.n_frames(length)) and got.dtype == torch.float32
    _check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)
    solo = fn(waves[1:2].cuda(), cfg)
    torch.testing.assert_close(got[1], solo[0], atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("case", stft_params())
def test_fd_mfcc_every_geometry_matches_reference(backend, case):
    """Odd and even n_fft / hop / win_length at 8 to 44.1 kHz (tests/stft_cases.py, as on the CPU backends):
    the frame count and the tables come from dsp; power-of-two n_fft runs the fused CUDA pass, others cuFFT."""
    fn = _need("fd_mfcc", backend)
    cfg = case.config()
    waves = _waves(3, case.length, seed=case.length)
    got = fn(waves.cuda(), cfg)
    assert got.shape == (3, 3, cfg.n_mfcc, case.n_frames) and got.dtype == torch.float32
    _check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)


@pytest.mark.parametrize("tile_frames,max_radix", [(1, 2), (5, 4), (16, 16), (32, 8)])
def test_cuda_fd_mfcc_tiled_variants(tile_frames, max_radix):
    """The tiled CUDA pass (the kernel of shapes without a per-clip instance) at other frames per block and FFT
    radices (32 frames need > 48 KB shared memory), with and without deltas."""
    _need("fd_mfcc", "cuda")
    cfg = FeatureConfig.speech16k()
    c = gpu_features.feature_plan(cfg, 16000, torch.device("cuda"))
    waves = _waves(3, 16000, seed=21)
    args = (waves.cuda(), c.window, c.mel_bands, c.mel_weights, c.dct, c.delta_start, c.delta_coef, c.n_frames,
            cfg.hop_length, cfg.preemphasis, cfg.amin, c.ref_db, cfg.top_db)
    got = torch.ops.ddfad.fd_mfcc_fused(*args, True, tile_frames, max_radix)
    _check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)
    assert torch.equal(torch.ops.ddfad.fd_mfcc_fused(*args, False, tile_frames, max_radix), got[:, 0])


def _coloured(batch: int, length: int, seed: int) -> torch.Tensor:
    """1/f noise (bands 20-40 dB below the frame's peak at the top of the spectrum)."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(batch, length, generator=g, dtype=torch.float64))
    f = torch.arange(spec.shape[-1], dtype=torch.float64).clamp_min(1.0)
    x = torch.fft.irfft(spec / f.sqrt(), n=length)
    return (0.3 * x / x.abs().amax(dim=1, keepdim=True)).float()


@pytest.mark.parametrize("cfg", [FeatureConfig.fsdd(), FeatureConfig.speech16k()], ids=["fsdd", "speech16k"])
@pytest.mark.parametrize("max_blocks", [0, 3])
def test_cuda_fd_mfcc_clip_kernel(cfg, max_blocks):
    """The per-clip kernel runs the presets (ddfad::fd_mfcc chooses it) and matches the reference on white and
    1/f noise, with a quiet clip, on a persistent grid of 3 blocks for 70 clips too; without deltas its MFCC
    channel; ddfad::fd_mfcc equals it."""
    _need("fd_mfcc", "cuda")
    L = cfg.fixed_length
    c = gpu_features.feature_plan(cfg, L, torch.device("cuda"))
    assert c.cuda_kernel() == "clip"
    waves = torch.cat([_waves(35, L, seed=22), _coloured(35, L, seed=23)])
    args = (waves.cuda(), c.window, c.win_lo, c.win_hi, c.mel_bands, c.mel_weights, c.dct, c.delta_start,
            c.delta_coef, c.n_frames, cfg.hop_length, cfg.preemphasis, cfg.amin, c.ref_db, cfg.top_db)
    got = torch.ops.ddfad.fd_mfcc_clip(*args, True, max_blocks)
    pick = [0, 1, 2, 34, 35, 36, 69]
    _check_fd_mfcc(got[pick], ref.fd_mfcc(waves[pick].double(), cfg), cfg.delta_width)
    assert torch.equal(torch.ops.ddfad.fd_mfcc_clip(*args, False, max_blocks), got[:, 0])
    assert torch.equal(c.native(waves.cuda()), got)


def test_one_schema_dispatches_by_device():
    """torch.ops.ddfad.fd_mfcc and torch.ops.ddfad.griffin_lim: the same call on CPU and CUDA tensors runs each
    device's kernel, with the same result (float32 tolerances)."""
    _need("fd_mfcc", "cuda")
    cfg = FeatureConfig.fsdd()
    waves = _waves(4, 8000, seed=24)
    cpu = gpu_features.feature_plan(cfg, 8000, torch.device("cpu")).native(waves)        # the CPU kernel
    gpu = gpu_features.feature_plan(cfg, 8000, torch.device("cuda")).native(waves.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=5e-4, rtol=1e-5)
    from ddfad_fast.ops import gpu_gla
    mag, phase = _gla_case(256, 80, 160, 8000)
    outs = [gpu_gla.cuda_op(mag.float().to(d), phase.to(torch.complex64).to(d), 256, 80, 160, "hann", 4, 0.99, 8000)
            for d in ("cpu", "cuda")]
    torch.testing.assert_close(outs[1].cpu(), outs[0], atol=1e-4, rtol=0)


def test_fd_mfcc_graph_replay():
    _need("fd_mfcc", "cuda")
    cfg = FeatureConfig.fsdd()
    graph = gpu_features.FdMfccGraph(cfg, 64, 8000)
    waves = _waves(64, 8000, seed=25).cuda()
    graph.waves.copy_(waves)
    torch.testing.assert_close(graph(), gpu_features.fd_mfcc("cuda", waves, cfg), atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_long_clips(backend):
    fn = _need("fd_mfcc", backend)
    cfg = FeatureConfig(fixed_length=None)
    waves = _waves(2, 80 * 1500 + 33, seed=5)          # 1501 frames per clip
    waves[0, :60000] *= 1e-3
    _check_fd_mfcc(fn(waves.cuda(), cfg), ref.fd_mfcc(waves.double(), cfg))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_large_batch_agrees_between_backends_and_reference(backend):
    fn = _need("fd_mfcc", backend)
    cfg = FeatureConfig.speech16k()
    waves = _waves(1024, 16000, seed=6).cuda()
    got = fn(waves, cfg)
    pick = [0, 1, 513, 1023]
    _check_fd_mfcc(got[pick], ref.fd_mfcc(waves[pick].double().cpu(), cfg))


def test_fd_mfcc_matches_librosa_fsdd_preset():
    librosa = pytest.importorskip("librosa")
    cfg = FeatureConfig.fsdd()
    waves = _waves(2, 8000, seed=8)
    for backend in GPU_BACKENDS:
        if backend not in dispatch.candidates("fd_mfcc", "cuda", torch.float32):
            continue
        got = dispatch.get("fd_mfcc", "cuda", backend=backend)[1](waves.cuda(), cfg).cpu().numpy()
        for b in range(2):
            y = librosa.effects.preemphasis(waves[b].numpy(), coef=0.97)
            power = np.abs(librosa.stft(y, n_fft=256, hop_length=80, win_length=160, pad_mode="constant")) ** 2
            db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=8000, n_mels=40), top_db=80.0)
            mfcc = librosa.feature.mfcc(S=db, n_mfcc=20)
            want = np.stack([mfcc, librosa.feature.delta(mfcc, order=1), librosa.feature.delta(mfcc, order=2)])
            _check_fd_mfcc(torch.from_numpy(got[b:b + 1]), torch.from_numpy(want[None]).double())


def test_public_fd_mfcc_dispatches_to_a_gpu_backend():
    from ddfad_fast.ops import features

    name, _ = dispatch.get("fd_mfcc", torch.zeros(1, device="cuda"))
    assert name in GPU_BACKENDS
    waves = _waves(2, 8000, seed=9)
    _check_fd_mfcc(features.fd_mfcc(waves.cuda(), 8000), ref.fd_mfcc(waves.double(), FeatureConfig()))


# ---- griffin_lim ---------------------------------------------------------------------------------
def _gla_case(n_fft: int, hop: int, win_length: int, length: int, batch: int = 2, seed: int = 1,
              window: str = "hann"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(batch, length, generator=g, dtype=torch.float64)
    mag = ref.stft(y, n_fft, hop, win_length, window).abs()
    phase = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=g, dtype=torch.float64))
    return mag, phase


def _run_gla(fn, mag, phase, n_fft, hop, win_length, length, n_iter, dtype, window="hann", **kw):
    return fn(mag.to("cuda", dtype), n_fft, hop, win_length, window, n_iter, 0.99,
              phase.to("cuda", dtype.to_complex()), length, **kw)


# float64 is float64 arithmetic end to end: 1e-10 of the peak against the float64 reference (same phases and
# iterations) catches a float32 operation inside the path, which costs ~1e-6
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("n_fft,hop,win_length,window,length",
                         [(512, 128, 320, "hann", 4000), (400, 100, 400, "hann", 3001), (255, 64, 200, "hann", 2000)]
                         + [(c.n_fft, c.hop_length, c.win_length, c.window, c.length) for c in STFT_CASES],
                         ids=["speech16k", "n_fft-400", "odd-n_fft"] + [c.name for c in STFT_CASES])
def test_griffin_lim_matches_reference(backend, dtype, atol, n_fft, hop, win_length, window, length):
    fn = _need("griffin_lim", backend, dtype)
    mag, phase = _gla_case(n_fft, hop, win_length, length, window=window)
    want = ref.griffin_lim(mag, n_fft, hop, win_length, window, 8, 0.99, phase, length)
    got = _run_gla(fn, mag, phase, n_fft, hop, win_length, length, 8, dtype, window=window)
    assert got.dtype == dtype and got.shape == want.shape
    got = got.cpu().double()
    if dtype == torch.float32:          # float32 on the samples the window envelope conditions well (stft_cases)
        assert torch.isfinite(got).all()
        keep = torch.from_numpy(well_conditioned(n_fft, hop, win_length, window, length))
        got, want = got[:, keep], want[:, keep]
    torch.testing.assert_close(got, want, atol=atol * max(1.0, want.abs().max().item()), rtol=0)


@pytest.mark.parametrize("tile_frames,max_radix", [(1, 2), (3, 4), (8, 8), (16, 16), (0, 0), (-1, 0)],
                         ids=["1x2", "3x4", "8x8", "16x16", "defaults", "cuFFT-path"])
def test_cuda_griffin_lim_variants_agree(tile_frames, max_radix):
    """Fused kernel: frames per block x largest FFT pass (16 frames in float64 needs > 48 KB shared memory)."""
    fn = _need("griffin_lim", "cuda", torch.float64)
    mag, phase = _gla_case(512, 128, 320, 4000)
    want = ref.griffin_lim(mag, 512, 128, 320, "hann", 4, 0.99, phase, 4000)
    got = _run_gla(fn, mag, phase, 512, 128, 320, 4000, 4, torch.float64, tile_frames=tile_frames,
                   max_radix=max_radix)
    torch.testing.assert_close(got.cpu(), want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_is_deterministic(backend):
    fn = _need("griffin_lim", backend)
    mag, phase = _gla_case(512, 128, 320, 16000, batch=8)
    runs = [_run_gla(fn, mag, phase, 512, 128, 320, 16000, 4, torch.float32) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_random_phase_convergence_close_to_reference(backend):
    """Spectral convergence after 32 iterations within 0.3 dB of the reference's (docs/architecture.md section 4)."""
    from ddfad_fast.audio.metrics import spectral_convergence

    fn = _need("griffin_lim", backend)
    mag, phase = _gla_case(512, 128, 320, 16000, batch=4, seed=11)
    ours = _run_gla(fn, mag, phase, 512, 128, 320, 16000, 32, torch.float32).cpu().double()
    theirs = ref.griffin_lim(mag, 512, 128, 320, "hann", 32, 0.99, phase, 16000)
    sc_ours = spectral_convergence(mag, ours, 512, 128, 320)
    sc_ref = spectral_convergence(mag, theirs, 512, 128, 320)
    assert (sc_ours - sc_ref).abs().max() < 0.3, (sc_ours, sc_ref)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_large_batch_matches_reference(backend):
    fn = _need("griffin_lim", backend)
    mag, phase = _gla_case(512, 128, 320, 16000, batch=1024, seed=12)
    got = _run_gla(fn, mag, phase, 512, 128, 320, 16000, 3, torch.float32)
    pick = [0, 511, 1023]
    want = ref.griffin_lim(mag[pick], 512, 128, 320, "hann", 3, 0.99, phase[pick], 16000)
    torch.testing.assert_close(got[pick].cpu().double(), want, atol=1e-4 * max(1.0, want.abs().max().item()), rtol=0)


def _capture(fn):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()                                       # warm-up: constants, kernels, cuFFT plans
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_cuda_graph_capture_32_iterations(backend):
    gla = _need("griffin_lim", backend)
    mag, phase = _gla_case(512, 128, 320, 16000, batch=16)
    mag, phase = mag.float().cuda(), phase.to(torch.complex64).cuda()
    run = lambda: gla(mag, 512, 128, 320, "hann", 32, 0.99, phase, 16000)  # noqa: E731
    eager = run()
    graph, captured = _capture(run)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, atol=1e-5, rtol=1e-5)
    mag.mul_(0.5)                                  # replays read the captured inputs' current contents
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, 0.5 * eager, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_cuda_graph_capture(backend):
    fn = _need("fd_mfcc", backend)
    cfg = FeatureConfig.speech16k()
    waves = _waves(64, 16000, seed=13).cuda()
    eager = fn(waves, cfg)
    graph, captured = _capture(lambda: fn(waves, cfg))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_griffin_lim_torch_compile_fullgraph(backend):
    fn = _need("griffin_lim", backend)
    mag, phase = _gla_case(256, 64, 256, 4000)
    mag, phase = mag.float().cuda(), phase.to(torch.complex64).cuda()
    compiled = torch.compile(lambda m, p: fn(m, 256, 64, 256, "hann", 4, 0.99, p, 4000) * 2.0, fullgraph=True)
    torch.testing.assert_close(compiled(mag, phase), 2.0 * fn(mag, 256, 64, 256, "hann", 4, 0.99, phase, 4000),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_torch_compile_fullgraph(backend):
    fn = _need("fd_mfcc", backend)
    cfg = FeatureConfig.fsdd()
    waves = _waves(4, 8000, seed=3).cuda()
    compiled = torch.compile(lambda w: fn(w, cfg) * 1.0, fullgraph=True)
    torch.testing.assert_close(compiled(waves), fn(waves, cfg), atol=1e-5, rtol=0)


def test_no_tf32_inside_our_ops():
    """Results keep fp32 accuracy even when the caller enables TF32, and our ops never switch it on."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert not before[0]
    cfg = FeatureConfig.fsdd()
    waves = _waves(2, 8000, seed=14)
    want = ref.fd_mfcc(waves.double(), cfg)
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        for backend in GPU_BACKENDS:
            if backend in dispatch.candidates("fd_mfcc", "cuda", torch.float32):
                _check_fd_mfcc(dispatch.get("fd_mfcc", "cuda", backend=backend)[1](waves.cuda(), cfg), want)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    for backend in GPU_BACKENDS:
        if backend in dispatch.candidates("fd_mfcc", "cuda", torch.float32):
            dispatch.get("fd_mfcc", "cuda", backend=backend)[1](waves.cuda(), cfg)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_run_pipeline_on_cuda(tmp_path):
    """`ddfad run --device cuda` trains the experts, distils, evaluates and writes the report on the GPU, with
    the compiled training steps; every file it writes holds CPU tensors (it loads on a machine without CUDA)."""
    import json

    from ddfad_fast.cli import main
    from ddfad_fast.io import load_artifact
    from helpers import tone_dataset
    tone_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "data"), "--cpc", "1", "--out", str(out), "--width", "8",
                 "--num-experts", "2", "--expert-epochs", "3", "--iterations", "3", "--syn-steps", "4",
                 "--num-nets", "2", "--eval-epochs", "2", "--full-epochs", "1", "--device", "cuda"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "cuda" and not report["failures"]
    distilled = report["accuracy"]["cpc1"]["distilled"]["convnet"]
    assert len(distilled["accs"]) == 2 and distilled["mean"] == pytest.approx(sum(distilled["accs"]) / 2)
    assert distilled["lr"] == pytest.approx(float(load_artifact(out / "cpc1" / "distilled.pt", kind="distilled")["alpha"]))

    def devices(obj):
        if isinstance(obj, torch.Tensor):
            return {obj.device.type}
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
        return set().union(*(devices(v) for v in items)) if items else set()

    files = [out / "cpc1" / "distilled.pt", *sorted((out / "experts").glob("expert_*.pt"))]
    assert len(files) == 3
    for path in files:
        assert devices(torch.load(path, weights_only=True)) == {"cpu"}, path     # no CUDA storage anywhere
    distilled = load_artifact(out / "cpc1" / "distilled.pt", kind="distilled")
    assert distilled["features"].device.type == "cpu" and torch.isfinite(distilled["features"]).all()


def test_modules_and_module_mtt_on_cuda():
    """transforms follow the input to the GPU (same result as the function there); mtt.match runs on CUDA
    tensors and agrees with the CPU result (float64)."""
    from ddfad_fast.train import mtt
    from ddfad_fast.audio.transforms import FDMFCC
    x = torch.randn(2, 3, 8000, device="cuda") * 0.1
    got = FDMFCC()(x)
    from ddfad_fast import fd_mfcc
    want = fd_mfcc(x.reshape(6, -1), 8000, FeatureConfig(fixed_length=None))
    assert got.device.type == "cuda" and torch.equal(got.reshape(want.shape), want)
    model = mtt.convnet(3, 4, width=8, depth=2, image_size=8).double()
    net = mtt.ModuleNet(model)
    gen = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(8, 3, 8, 8, generator=gen, dtype=torch.float64), torch.arange(8) % 4
    start = net.flatten()
    target = start + 0.05 * torch.randn(net.num_params, generator=gen, dtype=torch.float64)
    cpu = mtt.match(net, xs, ys, 0.05, start, target, steps=4, batch=4, generator=torch.Generator().manual_seed(1))
    gpu = mtt.match(net, xs.cuda(), ys.cuda(), 0.05, start.cuda(), target.cuda(), steps=4, batch=4,
                    generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gpu.grad_x.cpu(), cpu.grad_x, rtol=1e-9, atol=1e-12)
