"""Both GPU backends (triton, cuda) of both ops on a real CUDA device, at the tolerances of
docs/architecture.md section 4.

The oracle is ddfad_fast.ops.reference run in float64 on the CPU (itself tested against librosa); where
librosa is importable the FSDD-preset features are also compared with it directly. Also: CUDA graph
capture of 32 Griffin-Lim iterations, torch.compile(fullgraph=True), no TF32 inside our ops, float64
Griffin-Lim, run-to-run determinism. Skipped cleanly on machines without CUDA.
"""
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from ddfad_fast.ops import dispatch, gpu_features, reference as ref  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from gpu_checks import (GPU_BACKENDS, capture, check_fd_mfcc, coloured, gla_case, need,  # noqa: E402
                        waves as make_waves)
from stft_cases import params as stft_params  # noqa: E402
from tolerances import tol  # noqa: E402


# ---- fd_mfcc -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_mfcc_on_the_gpu_is_the_first_fd_mfcc_channel(backend):
    """mfcc has GPU backends (no plain-torch run by default on CUDA) equal to fd_mfcc's MFCC channel."""
    cfg = FeatureConfig.fsdd()
    waves = make_waves(3, 8000, 7).cuda()
    got = need("mfcc", backend)(waves, cfg)
    assert torch.equal(got, need("fd_mfcc", backend)(waves, cfg)[:, 0])
    torch.testing.assert_close(got.double().cpu(), ref.mfcc(waves.double().cpu(), cfg), **tol("mfcc", "float32"))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("cfg,length", [(FeatureConfig.fsdd(), 8000), (FeatureConfig.speech16k(), 16000),
                                        (FeatureConfig(fixed_length=None), 1203),
                                        (FeatureConfig(fixed_length=None, top_db=None), 300),
                                        (FeatureConfig(fixed_length=None), 50),
                                        (FeatureConfig(fixed_length=None, n_mels=48, n_mfcc=13, delta_width=5,
                                                       window="hamming", n_fft=400, win_length=400), 4001)],
                         ids=["fsdd", "speech16k", "1203", "short-no-top-db", "one-frame", "odd-sizes"])
def test_fd_mfcc_matches_reference(backend, cfg, length):
    fn = need("fd_mfcc", backend)
    waves = make_waves(3, length, seed=length)
    got = fn(waves.cuda(), cfg)
    assert got.shape == (3, 3, cfg.n_mfcc, cfg.n_frames(length)) and got.dtype == torch.float32
    check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)
    solo = fn(waves[1:2].cuda(), cfg)
    torch.testing.assert_close(got[1], solo[0], atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("case", stft_params())
def test_fd_mfcc_every_geometry_matches_reference(backend, case):
    """Odd and even n_fft / hop / win_length at 8 to 44.1 kHz (tests/stft_cases.py, as on the CPU backends):
    the frame count and the tables come from dsp; power-of-two n_fft runs the fused CUDA pass, others cuFFT."""
    fn = need("fd_mfcc", backend)
    cfg = case.config()
    waves = make_waves(3, case.length, seed=case.length)
    got = fn(waves.cuda(), cfg)
    assert got.shape == (3, 3, cfg.n_mfcc, case.n_frames) and got.dtype == torch.float32
    check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)


@pytest.mark.parametrize("tile_frames,max_radix", [(1, 2), (5, 4), (16, 16), (32, 8)])
def test_cuda_fd_mfcc_tiled_variants(tile_frames, max_radix):
    """The tiled CUDA pass (the kernel of shapes without a per-clip instance) at other frames per block and FFT
    radices (32 frames need > 48 KB shared memory), with and without deltas."""
    need("fd_mfcc", "cuda")
    cfg = FeatureConfig.speech16k()
    c = gpu_features.feature_plan(cfg, 16000, torch.device("cuda"))
    waves = make_waves(3, 16000, seed=21)
    args = (waves.cuda(), c.window, c.mel_bands, c.mel_weights, c.dct, c.delta_start, c.delta_coef, c.n_frames,
            cfg.hop_length, cfg.preemphasis, cfg.amin, c.ref_db, cfg.top_db)
    got = torch.ops.ddfad.fd_mfcc_fused(*args, True, tile_frames, max_radix)
    check_fd_mfcc(got, ref.fd_mfcc(waves.double(), cfg), cfg.delta_width)
    assert torch.equal(torch.ops.ddfad.fd_mfcc_fused(*args, False, tile_frames, max_radix), got[:, 0])


@pytest.mark.parametrize("cfg", [FeatureConfig.fsdd(), FeatureConfig.speech16k()], ids=["fsdd", "speech16k"])
@pytest.mark.parametrize("max_blocks", [0, 3])
def test_cuda_fd_mfcc_clip_kernel(cfg, max_blocks):
    """The per-clip kernel runs the presets (ddfad::fd_mfcc chooses it) and matches the reference on white and
    1/f noise, with a quiet clip, on a persistent grid of 3 blocks for 70 clips too; without deltas its MFCC
    channel; ddfad::fd_mfcc equals it."""
    need("fd_mfcc", "cuda")
    L = cfg.fixed_length
    c = gpu_features.feature_plan(cfg, L, torch.device("cuda"))
    assert c.cuda_kernel() == "clip"
    waves = torch.cat([make_waves(35, L, seed=22), coloured(35, L, seed=23)])
    args = (waves.cuda(), c.window, c.win_lo, c.win_hi, c.mel_bands, c.mel_weights, c.dct, c.delta_start,
            c.delta_coef, c.n_frames, cfg.hop_length, cfg.preemphasis, cfg.amin, c.ref_db, cfg.top_db)
    got = torch.ops.ddfad.fd_mfcc_clip(*args, True, max_blocks)
    pick = [0, 1, 2, 34, 35, 36, 69]
    check_fd_mfcc(got[pick], ref.fd_mfcc(waves[pick].double(), cfg), cfg.delta_width)
    assert torch.equal(torch.ops.ddfad.fd_mfcc_clip(*args, False, max_blocks), got[:, 0])
    assert torch.equal(c.native(waves.cuda()), got)


def test_one_schema_dispatches_by_device():
    """torch.ops.ddfad.fd_mfcc and torch.ops.ddfad.griffin_lim: the same call on CPU and CUDA tensors runs each
    device's kernel, with the same result (float32 tolerances)."""
    need("fd_mfcc", "cuda")
    cfg = FeatureConfig.fsdd()
    waves = make_waves(4, 8000, seed=24)
    cpu = gpu_features.feature_plan(cfg, 8000, torch.device("cpu")).native(waves)        # the CPU kernel
    gpu = gpu_features.feature_plan(cfg, 8000, torch.device("cuda")).native(waves.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, **tol("mfcc", "float32"))
    from ddfad_fast.ops import gpu_gla
    mag, phase = gla_case(256, 80, 160, 8000)
    outs = [gpu_gla.cuda_op(mag.float().to(d), phase.to(torch.complex64).to(d), 256, 80, 160, "hann", 4, 0.99, 8000)
            for d in ("cpu", "cuda")]
    torch.testing.assert_close(outs[1].cpu(), outs[0], **tol("griffin_lim", "float32", "cuda"))


def test_fd_mfcc_graph_replay():
    need("fd_mfcc", "cuda")
    cfg = FeatureConfig.fsdd()
    graph = gpu_features.FdMfccGraph(cfg, 64, 8000)
    waves = make_waves(64, 8000, seed=25).cuda()
    graph.waves.copy_(waves)
    torch.testing.assert_close(graph(), gpu_features.fd_mfcc("cuda", waves, cfg), atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_long_clips(backend):
    fn = need("fd_mfcc", backend)
    cfg = FeatureConfig(fixed_length=None)
    waves = make_waves(2, 80 * 1500 + 33, seed=5)          # 1501 frames per clip
    waves[0, :60000] *= 1e-3
    check_fd_mfcc(fn(waves.cuda(), cfg), ref.fd_mfcc(waves.double(), cfg))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_large_batch_agrees_between_backends_and_reference(backend):
    fn = need("fd_mfcc", backend)
    cfg = FeatureConfig.speech16k()
    waves = make_waves(1024, 16000, seed=6).cuda()
    got = fn(waves, cfg)
    pick = [0, 1, 513, 1023]
    check_fd_mfcc(got[pick], ref.fd_mfcc(waves[pick].double().cpu(), cfg))


def test_fd_mfcc_matches_librosa_fsdd_preset():
    librosa = pytest.importorskip("librosa")
    cfg = FeatureConfig.fsdd()
    waves = make_waves(2, 8000, seed=8)
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
            check_fd_mfcc(torch.from_numpy(got[b:b + 1]), torch.from_numpy(want[None]).double())


def test_public_fd_mfcc_dispatches_to_a_gpu_backend():
    from ddfad_fast.ops import features

    name, _ = dispatch.get("fd_mfcc", torch.zeros(1, device="cuda"))
    assert name in GPU_BACKENDS
    waves = make_waves(2, 8000, seed=9)
    check_fd_mfcc(features.fd_mfcc(waves.cuda(), 8000), ref.fd_mfcc(waves.double(), FeatureConfig()))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_cuda_graph_capture(backend):
    fn = need("fd_mfcc", backend)
    cfg = FeatureConfig.speech16k()
    waves = make_waves(64, 16000, seed=13).cuda()
    eager = fn(waves, cfg)
    graph, captured = capture(lambda: fn(waves, cfg))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, atol=0, rtol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fd_mfcc_torch_compile_fullgraph(backend):
    fn = need("fd_mfcc", backend)
    cfg = FeatureConfig.fsdd()
    waves = make_waves(4, 8000, seed=3).cuda()
    compiled = torch.compile(lambda w: fn(w, cfg) * 1.0, fullgraph=True)
    torch.testing.assert_close(compiled(waves), fn(waves, cfg), atol=1e-5, rtol=0)


def test_no_tf32_inside_our_ops():
    """Results keep fp32 accuracy even when the caller enables TF32, and our ops never switch it on."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert not before[0]
    cfg = FeatureConfig.fsdd()
    waves = make_waves(2, 8000, seed=14)
    want = ref.fd_mfcc(waves.double(), cfg)
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        for backend in GPU_BACKENDS:
            if backend in dispatch.candidates("fd_mfcc", "cuda", torch.float32):
                check_fd_mfcc(dispatch.get("fd_mfcc", "cuda", backend=backend)[1](waves.cuda(), cfg), want)
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
