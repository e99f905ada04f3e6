"""GPU benchmark of fd_mfcc and griffin_lim: triton, cuda, torchaudio, and our torch reference.

For each preset (speech16k: 1 s at 16 kHz, n_fft 512, hop 128; fsdd: 1 s at 8 kHz) and batch size:
median ms over >= 20 CUDA-event-timed runs after warm-up, ratio vs torchaudio, achieved GB/s for the
minimal byte count, that bandwidth as a fraction of a measured device-to-device copy, and peak extra
memory (torch.cuda.max_memory_allocated above the inputs).

Byte counts (float32):
* fd_mfcc minimal pipeline = the waves read once + the (B, 3, n_mfcc, T) output written once:
  4*B*L + 12*B*n_mfcc*T. (Our pipeline also writes+reads the frames and the spectrum; the table
  reports the fraction against the minimal count, so it shows what fusion could still win.)
* one fast Griffin-Lim iteration (design doc section 5): 36 bytes per spectrogram bin + 8 per sample,
  36*B*F*T + 8*B*L; griffin_lim rows time 32 iterations and report per-iteration figures.

Usage: python bench/gpu_bench.py [--batches 64 1024] [--repeats 20] [--out DIR]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_json  # noqa: E402

from ddfad_fast import backends  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402

N_ITER = 32


def cuda_time_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_gbs() -> float:
    """Achieved device-to-device copy bandwidth (read + write) on 1 GiB, GB/s."""
    src = torch.empty(2 ** 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_time_ms(lambda: dst.copy_(src), repeats=20)
    del src, dst
    return 2 * 4 * 2 ** 28 / (ms * 1e-3) / 1e9


def peak_extra_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def torchaudio_fd_mfcc(cfg: FeatureConfig) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    try:
        import torchaudio
    except ImportError:
        return None
    mfcc = torchaudio.transforms.MFCC(sample_rate=cfg.sample_rate, n_mfcc=cfg.n_mfcc, norm="ortho", log_mels=False,
                                      melkwargs=dict(n_fft=cfg.n_fft, win_length=cfg.win_length,
                                                     hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                                                     center=True, pad_mode="constant")).cuda()
    delta = torchaudio.functional.compute_deltas

    def run(waves: torch.Tensor) -> torch.Tensor:
        m = mfcc(waves)
        d1 = delta(m, win_length=cfg.delta_width)
        return torch.stack([m, d1, delta(d1, win_length=cfg.delta_width)], dim=1)
    return run


def torchaudio_griffin_lim(cfg: FeatureConfig) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    try:
        import torchaudio
    except ImportError:
        return None
    window = torch.hann_window(cfg.win_length, device="cuda")
    return lambda mag: torchaudio.functional.griffinlim(
        mag, window, cfg.n_fft, cfg.hop_length, cfg.win_length, 1.0, N_ITER, 0.99, cfg.fixed_length, False)


def our_fns(op: str) -> Dict[str, Callable]:
    out = {}
    for name in ("triton", "cuda", "reference"):
        if name in backends.candidates(op, "cuda"):
            out[name] = backends.get(op, "cuda", backend=name)[1]
    return out


def bench_preset(preset: str, cfg: FeatureConfig, batches: List[int], repeats: int, copy_gbs: float) -> List[Dict]:
    rows: List[Dict] = []
    gen = torch.Generator("cuda").manual_seed(0)
    L = cfg.fixed_length
    T = cfg.n_frames(L)
    F = cfg.n_freqs
    for B in batches:
        waves = torch.randn(B, L, device="cuda", generator=gen) * 0.1
        feat_bytes = 4 * B * L + 12 * B * cfg.n_mfcc * T
        impls: Dict[str, Callable[[], object]] = {k: (lambda f=f: f(waves, cfg)) for k, f in our_fns("fd_mfcc").items()}
        ta = torchaudio_fd_mfcc(cfg)
        if ta is not None:
            impls["torchaudio"] = lambda: ta(waves)
        rows += _measure("fd_mfcc", preset, B, impls, feat_bytes, 1, repeats, copy_gbs)

        mag = torch.rand(B, F, T, device="cuda", generator=gen)
        phase = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, device="cuda", generator=gen))
        gla_bytes = 36 * B * F * T + 8 * B * L
        impls = {k: (lambda f=f: f(mag, cfg.n_fft, cfg.hop_length, cfg.win_length, "hann", N_ITER, 0.99, phase, L, None))
                 for k, f in our_fns("griffin_lim").items()}
        tg = torchaudio_griffin_lim(cfg)
        if tg is not None:
            impls["torchaudio"] = lambda: tg(mag)
        rows += _measure("griffin_lim (per iter)", preset, B, impls, gla_bytes, N_ITER, repeats, copy_gbs)
        del waves, mag, phase
        torch.cuda.empty_cache()
    return rows


def _measure(op: str, preset: str, B: int, impls: Dict[str, Callable[[], object]], nbytes: int, per: int,
             repeats: int, copy_gbs: float) -> List[Dict]:
    rows = []
    for name, fn in impls.items():
        try:
            ms = cuda_time_ms(fn, repeats) / per
            mem = peak_extra_mb(fn)
        except Exception as exc:  # a failing implementation is recorded, the others still run
            rows.append({"op": op, "preset": preset, "B": B, "impl": name, "error": repr(exc)})
            continue
        gbs = nbytes / (ms * 1e-3) / 1e9
        rows.append({"op": op, "preset": preset, "B": B, "impl": name, "ms": ms, "clips_per_s": B / (ms * 1e-3),
                     "GB/s": gbs, "frac_of_copy_bw": gbs / copy_gbs, "peak_extra_MB": mem})
    ta = next((r["ms"] for r in rows if r["impl"] == "torchaudio" and "ms" in r), None)
    for r in rows:
        if ta is not None and "ms" in r:
            r["x_vs_torchaudio"] = ta / r["ms"]
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device, nothing to measure")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    copy_gbs = copy_bandwidth_gbs()
    print(f"device-to-device copy bandwidth: {copy_gbs:.0f} GB/s")
    rows: List[Dict] = []
    for preset, cfg in (("speech16k", FeatureConfig.speech16k()), ("fsdd", FeatureConfig.fsdd())):
        rows += bench_preset(preset, cfg, args.batches, max(20, args.repeats), copy_gbs)
    print_table(rows, ["op", "preset", "B", "impl", "ms", "x_vs_torchaudio", "GB/s", "frac_of_copy_bw",
                       "peak_extra_MB", "error"])
    path = write_json("gpu_bench", rows, {"copy_bandwidth_GBs": copy_gbs, "n_iter": N_ITER,
                                          "machine_gpu": machine_info().get("gpu")}, out_dir=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
