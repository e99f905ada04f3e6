"""Helpers of the GPU tests (tests/test_gpu.py, tests/test_gpu_griffin_lim.py): the backend under test or a skip,
seeded inputs, the fd_mfcc tolerance check of docs/architecture.md section 4, CUDA graph capture."""
from __future__ import annotations

import math

import pytest
import torch

from ddfad_fast.ops import dispatch, reference as ref
from tolerances import TOLERANCES, tol

GPU_BACKENDS = ["triton", "cuda"]


def need(op: str, backend: str, dtype: torch.dtype = torch.float32):
    if backend not in dispatch.candidates(op, "cuda", dtype):
        pytest.skip(f"backend {backend!r} of {op!r} unavailable here for {dtype}")
    return dispatch.get(op, "cuda", backend=backend)[1]


def waves(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(batch, length, generator=g) * 0.3
    if batch > 1:
        out[1] *= 1e-5                               # a quiet clip beside loud ones: per-clip top_db
    return out


def check_fd_mfcc(got: torch.Tensor, want: torch.Tensor, width: int = 9) -> None:
    """The tolerances of tests/tolerances.py: MFCC within 5e-4 + 1e-5 |MFCC| of the reference;
    the delta channels within 1e-4 + 1e-5 * (largest |MFCC| of that clip and coefficient) of the
    reference deltas *of the kernel's own MFCCs* (float32 rounding grows with the size of the values
    filtered: c0 of a -100 dB clip is near -700) and, end to end, within the MFCC tolerance (a
    Savitzky-Golay filter of L1 norm < 1 cannot amplify the MFCC's error)."""
    got = got.double().cpu()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[:, 0], want[:, 0], **tol("mfcc", "float32"))
    scale = got[:, 0].abs().amax(dim=-1, keepdim=True)
    own, end = TOLERANCES[("deltas", "float32", "gpu")], TOLERANCES[("fd_mfcc_deltas", "float32", "gpu")]
    for order in (1, 2):
        err = (got[:, order] - ref.deltas(got[:, 0], order, width)).abs()
        assert (err <= own.atol + own.rtol * scale).all(), f"delta order {order}: max error {err.max().item():.3g}"
        err = (got[:, order] - want[:, order]).abs()
        assert (err <= end.atol + end.rtol * scale).all(), f"delta order {order} vs reference: {err.max().item():.3g}"


def coloured(batch: int, length: int, seed: int) -> torch.Tensor:
    """1/f noise (bands 20-40 dB below the frame's peak at the top of the spectrum)."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(batch, length, generator=g, dtype=torch.float64))
    f = torch.arange(spec.shape[-1], dtype=torch.float64).clamp_min(1.0)
    x = torch.fft.irfft(spec / f.sqrt(), n=length)
    return (0.3 * x / x.abs().amax(dim=1, keepdim=True)).float()


def gla_case(n_fft: int, hop: int, win_length: int, length: int, batch: int = 2, seed: int = 1,
              window: str = "hann"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(batch, length, generator=g, dtype=torch.float64)
    mag = ref.stft(y, n_fft, hop, win_length, window).abs()
    phase = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=g, dtype=torch.float64))
    return mag, phase


def run_gla(fn, mag, phase, n_fft, hop, win_length, length, n_iter, dtype, window="hann", **kw):
    return fn(mag.to("cuda", dtype), n_fft, hop, win_length, window, n_iter, 0.99,
              phase.to("cuda", dtype.to_complex()), length, **kw)


# float64 is float64 arithmetic end to end: 1e-10 of the peak against the float64 reference (same phases and
# iterations) catches a float32 operation inside the path, which costs ~1e-6
def capture(fn):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()                                       # warm-up: constants, kernels, cuFFT plans
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out
