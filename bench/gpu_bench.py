"""GPU benchmark of fd_mfcc and griffin_lim: our cuda and triton backends, torchaudio, our torch reference.

Presets: fsdd (1 s at 8 kHz, n_fft 256, hop 80, T = 101) and speech16k (1 s at 16 kHz, n_fft 512, hop 128,
T = 126); batches 64 and 1024. Every row of one run, timed the same way (bench/gpu_timing.py):
* ``ms``: device time per call, 30 calls back to back between CUDA events, inputs rotated through buffers
  spanning 2 x L2; ``host_us``: the host's time to enqueue one call; ``graph_ms``: the same calls captured in
  a CUDA graph and replayed (no host in it); ``latency_ms``: one synchronised call from an idle GPU.
* ``floor_ms``: the bytes the op must move (waves in, features out: 4 B L + 12 B n_mfcc T; Griffin-Lim 36 B
  per bin an iteration) at the measured copy bandwidth; ``frac_floor`` = floor / graph time.
* ``x_ta``: torchaudio doing the same work (pre-emphasis, per-clip top_db; see gpu_anchors.py), graph time
  over graph time; ``torchaudio MFCC`` does less (no pre-emphasis, one batch floor) and is labelled so;
  ``torchaudio compiled``: the same work under torch.compile (B = 1024).
* ``err``: our output of 8 clips against the float64 reference on the CPU (max abs error, MFCC channel;
  deltas in ``err_delta``), checked at 5e-4 / 1e-4 (docs/architecture.md section 4).
Plus a torch.profiler kernel table per implementation at B = 1024, the Triton kernels' registers and spills,
and the targets of the GPU kernels issue printed as [MET] / [MISSED]. Writes gpu_bench.json to --out.

Usage: python bench/gpu_bench.py [--batches 64 1024] [--out DIR] [--quick]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402
from gpu_anchors import torchaudio_griffin_lim, torchaudio_mfcc, torchaudio_same_work  # noqa: E402
from gpu_timing import (HBM_DATASHEET_GBS, device_ms, graph_ms, kernel_table, latency_ms, rotated,  # noqa: E402
                        triton_resources, warm_clocks)

from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.ops import dispatch, gpu, gpu_features, reference as ref  # noqa: E402

N_ITER = 32
PRESETS = {"fsdd": FeatureConfig.fsdd(), "speech16k": FeatureConfig.speech16k()}


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy bandwidth (bytes read + written) on 2 x 1 GiB, GB/s."""
    src = torch.randn(2 ** 28, device="cuda")
    dst = torch.empty_like(src)
    ms = device_ms(lambda i, d=dst, s=src: d.copy_(s), calls=10, repeats=3)["ms"]
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 4 * 2 ** 28 / (ms * 1e-3) / 1e9


def check(out: torch.Tensor, waves: torch.Tensor, cfg: FeatureConfig) -> Dict[str, object]:
    pick = [0, 1, 2, 3, out.shape[0] // 2, out.shape[0] - 3, out.shape[0] - 2, out.shape[0] - 1]
    want = ref.fd_mfcc(waves[pick].double().cpu(), cfg)
    got = out[pick].double().cpu()
    err = (got[:, 0] - want[:, 0]).abs().max().item()
    err_delta = (got[:, 1:] - want[:, 1:]).abs().max().item()
    return {"err": err, "err_delta": err_delta, "ok": bool(err <= 5e-4 + 1e-5 * want[:, 0].abs().max().item()
                                                         and err_delta <= 1e-4 + 1e-5 * want[:, 0].abs().max().item())}


def measure(rows: List[Dict], op: str, preset: str, B: int, impl: str, fn: Callable[[torch.Tensor], object],
            inputs: List[torch.Tensor], floor_ms: float, per: int = 1, graph: bool = True,
            extra: Optional[Dict] = None) -> Optional[object]:
    row: Dict[str, object] = {"op": op, "preset": preset, "B": B, "impl": impl, **(extra or {})}
    rows.append(row)
    n = len(inputs)
    try:
        out = fn(inputs[0])
        calls = 30 if per == 1 else 4
        t = device_ms(lambda i: fn(inputs[i % n]), calls=calls, repeats=5 if per == 1 else 3)
        row.update({"ms": t["ms"] / per, "ms_spread": (t["ms_max"] - t["ms_min"]) / per, "host_us": t["host_us"]})
        row["latency_ms"] = latency_ms(lambda: fn(inputs[0]), repeats=5) / per
        if graph:
            g = graph_ms(lambda i: fn(inputs[i % n]), n, calls=calls, repeats=3)
            row.update({"graph_ms": g["ms"] / per, "replay_host_us": g["replay_host_us"] / calls})
        best = row.get("graph_ms", row["ms"])
        row["floor_ms"] = floor_ms
        row["frac_floor"] = floor_ms / best
        return out
    except Exception as exc:  # a failing implementation is recorded, the others still run
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        traceback.print_exc()
        torch.cuda.empty_cache()
        return None


def bench_fd_mfcc(rows: List[Dict], profiles: Dict, preset: str, cfg: FeatureConfig, B: int, copy_gbs: float,
                  compiled: bool) -> None:
    L, T = cfg.fixed_length, cfg.n_frames(cfg.fixed_length)
    nbytes = 4 * B * L
    inputs = rotated(lambda i: torch.randn(B, L, device="cuda", generator=torch.Generator("cuda").manual_seed(i))
                     * 0.1, nbytes)
    inputs[0][1] *= 1e-4                                 # a quiet clip: per-clip top_db
    floor_ms = (nbytes + 12 * B * cfg.n_mfcc * T) / (copy_gbs * 1e9) * 1e3
    plan = gpu_features.feature_plan(cfg, L, inputs[0].device)
    impls: Dict[str, Callable] = {}
    cands = dispatch.candidates("fd_mfcc", "cuda", torch.float32)
    if "cuda" in cands:
        impls["cuda"] = plan.native
        impls["cuda (backend fn)"] = lambda w: gpu.fd_mfcc_cuda(w, cfg)
        impls["cuda tiled"] = lambda w: torch.ops.ddfad.fd_mfcc_fused(
            w, plan.window, plan.mel_bands, plan.mel_weights, plan.dct, plan.delta_start, plan.delta_coef, T,
            cfg.hop_length, cfg.preemphasis, cfg.amin, plan.ref_db, plan.top_db, True, 0, 0)
    if "triton" in cands:
        impls["triton"] = plan.triton
    same = torchaudio_same_work(cfg, "cuda")
    if same is not None:
        impls["torchaudio same work"] = same
        impls["torchaudio MFCC (no pre-emphasis, batch top_db)"] = torchaudio_mfcc(cfg, "cuda")
        if compiled:
            impls["torchaudio same work, compiled"] = torch.compile(same, dynamic=False)
    impls["reference"] = lambda w: ref.fd_mfcc(w, cfg)
    for name, fn in impls.items():
        extra = {"kernel": plan.cuda_kernel()} if name == "cuda" else None
        out = measure(rows, "fd_mfcc", preset, B, name, fn, inputs, floor_ms, extra=extra)
        if out is not None and not name.startswith("torchaudio"):
            rows[-1].update(check(out, inputs[0], cfg))
        elif out is not None and name == "torchaudio same work":
            rows[-1]["err_mfcc_channel"] = check(out, inputs[0], cfg)["err"]
        if B == 1024 and out is not None and name in ("cuda", "cuda tiled", "triton", "torchaudio same work"):
            try:
                profiles[f"fd_mfcc {preset} B={B} {name}"] = kernel_table(lambda f=fn, w=inputs[0]: f(w))
            except Exception as exc:
                profiles[f"fd_mfcc {preset} B={B} {name}"] = [{"error": repr(exc)[:200]}]
    del inputs
    torch.cuda.empty_cache()


def bench_griffin_lim(rows: List[Dict], profiles: Dict, preset: str, cfg: FeatureConfig, B: int,
                      copy_gbs: float) -> None:
    L, T, F = cfg.fixed_length, cfg.n_frames(cfg.fixed_length), cfg.n_freqs
    gen = torch.Generator("cuda").manual_seed(B + 1)
    mag = torch.rand(B, F, T, device="cuda", generator=gen)
    phase = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, device="cuda", generator=gen))
    floor_ms = 36 * B * F * T / (copy_gbs * 1e9) * 1e3
    args = (cfg.n_fft, cfg.hop_length, cfg.win_length, "hann", N_ITER, 0.99, phase, L)
    impls: Dict[str, Callable] = {}
    cands = dispatch.candidates("griffin_lim", "cuda", torch.float32)
    if "cuda" in cands:
        impls["cuda"] = lambda m: gpu.griffin_lim_cuda(m, *args)
        for tile, radix in ((32, 4), (16, 8), (8, 4)):
            impls[f"cuda tile={tile} radix={radix}"] = lambda m, t=tile, r=radix: gpu.griffin_lim_cuda(
                m, *args, tile_frames=t, max_radix=r)
        impls["cuda cuFFT path"] = lambda m: gpu.griffin_lim_cuda(m, *args, tile_frames=-1)
    if "triton" in cands:
        impls["triton"] = lambda m: gpu.griffin_lim_triton(m, *args)
    ta = torchaudio_griffin_lim(cfg, N_ITER, "cuda")
    if ta is not None:
        impls["torchaudio"] = ta
    for name, fn in impls.items():
        out = measure(rows, "griffin_lim", preset, B, name, fn, [mag], floor_ms, per=N_ITER,
                      graph=name != "torchaudio")             # torchaudio's istft synchronises (NOLA check)
        if B == 1024 and out is not None and name in ("cuda", "triton"):
            profiles[f"griffin_lim {preset} B={B} {name}"] = kernel_table(lambda f=fn, m=mag: f(m), calls=1)
    del mag, phase
    torch.cuda.empty_cache()


def add_ratios(rows: List[Dict]) -> None:
    def best(r):
        return r.get("graph_ms", r.get("ms"))
    anchors = {(r["op"], r["preset"], r["B"]): best(r) for r in rows
               if r["impl"] in ("torchaudio same work", "torchaudio") and best(r)}
    for r in rows:
        a = anchors.get((r["op"], r["preset"], r["B"]))
        if a is not None and best(r):
            r["x_ta"] = a / best(r)


def targets(rows: List[Dict]) -> List[Dict[str, object]]:
    """The targets of the GPU kernels issue (H200 or H100, B = 1024 unless said; graph times)."""
    def get(op, preset, impl, B=1024, key="graph_ms"):
        r = [x for x in rows if (x["op"], x["preset"], x["impl"], x["B"]) == (op, preset, impl, B) and key in x]
        return r[0][key] if r else None

    out = []

    def add(name, value, met, **kw):
        if value is not None:
            out.append({"target": name, "value": value, "met": bool(met), **kw})
    c_fsdd, c_16k, t_fsdd = get("fd_mfcc", "fsdd", "cuda"), get("fd_mfcc", "speech16k", "cuda"), get(
        "fd_mfcc", "fsdd", "triton")
    add("fd_mfcc fsdd cuda <= 0.045 ms", c_fsdd, c_fsdd is not None and c_fsdd <= 0.045)
    ta = get("fd_mfcc", "fsdd", "torchaudio same work")
    if c_fsdd and ta:
        add("fd_mfcc fsdd cuda >= 10x torchaudio (graph vs graph)", ta / c_fsdd, ta / c_fsdd >= 10)
    add("fd_mfcc speech16k cuda <= 0.11 ms", c_16k, c_16k is not None and c_16k <= 0.11)
    add("fd_mfcc fsdd triton <= 0.2 ms", t_fsdd, t_fsdd is not None and t_fsdd <= 0.2)
    if t_fsdd and c_fsdd:
        add("fd_mfcc fsdd triton within 4x of cuda", t_fsdd / c_fsdd, t_fsdd / c_fsdd <= 4)
    for impl in ("cuda", "triton"):
        for preset in PRESETS:
            v = get("fd_mfcc", preset, impl, B=64)
            add(f"fd_mfcc {preset} B=64 {impl} graph replay <= 0.015 ms", v, v is not None and v <= 0.015)
    g = get("griffin_lim", "fsdd", "cuda")
    add("griffin_lim fsdd cuda per iteration <= 0.22 ms", g, g is not None and g <= 0.22)
    for r in rows:
        if "ok" in r:
            add(f"{r['op']} {r['preset']} B={r['B']} {r['impl']} within tolerance of float64", r["err"], r["ok"])
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="no Griffin-Lim variants, no torch.compile anchor")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device, nothing to measure")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.time()
    warm_clocks()
    copy_gbs = copy_bandwidth_gbs()
    print(f"device-to-device copy bandwidth: {copy_gbs:.0f} GB/s (datasheet {HBM_DATASHEET_GBS:.0f})")
    print("backends:", {op: dispatch.candidates(op, "cuda", torch.float32) for op in ("fd_mfcc", "griffin_lim")})
    rows: List[Dict] = []
    profiles: Dict[str, List[Dict]] = {}
    for preset, cfg in PRESETS.items():
        for B in args.batches:
            print(f"-- {preset} B={B} ({time.time() - t0:.0f}s)", flush=True)
            bench_fd_mfcc(rows, profiles, preset, cfg, B, copy_gbs, compiled=B == max(args.batches) and not args.quick)
            bench_griffin_lim(rows, profiles, preset, cfg, B, copy_gbs)
    add_ratios(rows)
    print_table(rows, ["op", "preset", "B", "impl", "ms", "graph_ms", "host_us", "latency_ms", "x_ta", "frac_floor",
                       "err", "error"])
    for name, table in profiles.items():
        print(f"\n{name}")
        print_table(table, ["kernel", "calls_per_call", "us_per_call", "error"])
    try:
        from ddfad_fast.kernels import fd_mfcc as kf, griffin_lim as kg
        triton_res = triton_resources([kf._frame_kernel, kf._mel_db_kernel, kf._dct_delta_kernel,
                                       kg._gla_step_pairs_kernel, kg._ola_kernel])
    except Exception as exc:
        triton_res = [{"error": repr(exc)[:200]}]
    print("\nTriton kernels:", triton_res)
    tgt = targets(rows)
    print()
    for t in tgt:
        print(f"[{'MET' if t['met'] else 'MISSED'}] {t['target']}: {t['value']:.4g}")
    path = write_json("gpu_bench", rows, {"copy_bandwidth_GBs": copy_gbs, "n_iter": N_ITER, "targets": tgt,
                                          "kernel_profiles": profiles, "triton_resources": triton_res,
                                          "seconds": time.time() - t0}, out_dir=args.out)
    print(f"wrote {path} ({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
