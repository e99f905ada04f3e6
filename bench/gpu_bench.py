"""GPU benchmark of fd_mfcc and griffin_lim: our triton and cuda backends, torchaudio, our torch reference.

For each preset (speech16k: 1 s at 16 kHz, n_fft 512, hop 128; fsdd: 1 s at 8 kHz, n_fft 256, hop 80)
and batch size (default 64 and 1024): median ms over >= 20 CUDA-event-timed runs after warm-up, ratio
vs torchaudio, achieved GB/s of the minimal byte count, that bandwidth as a fraction of a measured
device-to-device copy (the "fraction of the floor": floor time / measured time), and peak extra memory
(torch.cuda.max_memory_allocated above what was allocated before the call).

Byte counts (float32):
* fd_mfcc, minimal: the waves read once + the (B, 3, n_mfcc, T) output written once, 4BL + 12 B n_mfcc T.
  The cuFFT pipeline (triton backend) also writes and reads the frames (8 B T n_fft) and the spectrum
  (16 B T F); ``pipeline_frac`` is those bytes at the measured time over copy bandwidth. The cuda
  backend's fused pass keeps frames and spectrum on chip (its extra traffic: dB, 8 B T n_mels).
* one fast Griffin-Lim iteration (docs/architecture.md section 5): 36 bytes per spectrogram bin + 8 per sample,
  36 B F T + 8 B L. griffin_lim rows time 32 iterations (plus setup and the final inverse STFT) and
  report per-iteration figures; "graph" rows replay a CUDA graph of the same 32-iteration call.

Also: per-stage times of each fd_mfcc / Griffin-Lim pipeline, a sweep of the fused CUDA iteration's
frames per block, which backend wins each op (the dispatch order to set), and the targets of the
GPU issue at B=1024 (speech16k). Writes gpu_bench.json to --out.

Usage: python bench/gpu_bench.py [--batches 64 1024] [--repeats 20] [--out DIR] [--quick]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, torchaudio_fd_mfcc, torchaudio_griffin_lim, write_json  # noqa: E402

from ddfad_fast.ops import dispatch, gpu as gb, reference as ref  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402

N_ITER = 32
OURS = ("triton", "cuda")
PRESETS = {"speech16k": FeatureConfig.speech16k(), "fsdd": FeatureConfig.fsdd()}


def cuda_time_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> Dict[str, float]:
    """Median / min / max milliseconds of ``fn()`` measured with CUDA events, after ``warmup`` calls."""
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
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times)}


def copy_bandwidth_gbs() -> float:
    """Achieved device-to-device copy bandwidth (bytes read + written) on 2 x 1 GiB, GB/s."""
    src = torch.randn(2 ** 28, device="cuda")
    dst = torch.empty_like(src)
    ms = cuda_time_ms(lambda: dst.copy_(src), repeats=20)["ms"]
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 4 * 2 ** 28 / (ms * 1e-3) / 1e9


def peak_extra_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    del out
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def graph_of(fn: Callable[[], object]) -> Callable[[], None]:
    """Capture ``fn()`` (after a warm-up on a side stream) in a CUDA graph; returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def our_fn(op: str, name: str) -> Optional[Callable]:
    if name not in dispatch.candidates(op, "cuda", torch.float32):
        return None
    return dispatch.get(op, "cuda", backend=name)[1]


# ---- measurement ---------------------------------------------------------------------------------
def measure(rows: List[Dict], op: str, preset: str, B: int, impl: str, fn: Callable[[], object], nbytes: int,
            per: int, repeats: int, copy_gbs: float, extra: Optional[Dict] = None,
            pipeline_bytes: Optional[int] = None) -> None:
    row: Dict[str, object] = {"op": op, "preset": preset, "B": B, "impl": impl, **(extra or {})}
    try:
        t = cuda_time_ms(fn, repeats)
        row.update({k: v / per for k, v in t.items()})
        row["peak_extra_MB"] = peak_extra_mb(fn)
    except Exception as exc:  # a failing implementation is recorded, the others still run
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        traceback.print_exc()
        rows.append(row)
        torch.cuda.empty_cache()
        return
    ms = row["ms"]
    row["clips_per_s"] = B / (ms * per * 1e-3)
    row["GB/s"] = nbytes / (ms * 1e-3) / 1e9
    row["frac_of_floor"] = row["GB/s"] / copy_gbs
    if pipeline_bytes is not None:
        row["pipeline_frac"] = pipeline_bytes / (ms * 1e-3) / 1e9 / copy_gbs
    rows.append(row)


def add_ratios(rows: List[Dict]) -> None:
    anchors = {(r["op"], r["preset"], r["B"]): r["ms"] for r in rows if r["impl"] == "torchaudio" and "ms" in r}
    for r in rows:
        a = anchors.get((r["op"].replace(" graph", ""), r["preset"], r["B"]))
        if a is not None and "ms" in r:
            r["x_vs_torchaudio"] = a / r["ms"]


def bench_fd_mfcc(rows: List[Dict], preset: str, cfg: FeatureConfig, B: int, repeats: int, copy_gbs: float) -> None:
    L, T, F = cfg.fixed_length, cfg.n_frames(cfg.fixed_length), cfg.n_freqs
    waves = (torch.randn(B, L, device="cuda", generator=torch.Generator("cuda").manual_seed(B)) * 0.1).contiguous()
    minimal = 4 * B * L + 12 * B * cfg.n_mfcc * T
    pipeline = minimal + 8 * B * T * cfg.n_fft + 16 * B * T * F
    for name in OURS:
        fn = our_fn("fd_mfcc", name)
        if fn is not None:
            measure(rows, "fd_mfcc", preset, B, name, lambda f=fn: f(waves, cfg), minimal, 1, repeats, copy_gbs,
                    pipeline_bytes=pipeline)
    ta = torchaudio_fd_mfcc(cfg, "cuda")
    if ta is not None:
        measure(rows, "fd_mfcc", preset, B, "torchaudio", lambda: ta(waves), minimal, 1, repeats, copy_gbs)
    measure(rows, "fd_mfcc", preset, B, "reference", lambda: ref.fd_mfcc(waves, cfg), minimal, 1, repeats, copy_gbs)


def bench_fd_mfcc_stages(rows: List[Dict], preset: str, cfg: FeatureConfig, B: int, repeats: int) -> None:
    """Time each stage of both pipelines: framing, rfft, post-FFT."""
    L = cfg.fixed_length
    waves = torch.randn(B, L, device="cuda") * 0.1
    c = gb.feature_tensors(cfg, L, waves.device)
    T = c.n_frames
    stages: Dict[str, Callable[[], object]] = {}
    if our_fn("fd_mfcc", "triton") is not None:
        from ddfad_fast.kernels.fd_mfcc import frame_waves, mfcc_from_spectrum
        frames = frame_waves(waves, c.window, T, cfg.hop_length, cfg.preemphasis)
        spec = torch.fft.rfft(frames).view(B, T, cfg.n_freqs)
        stages["triton frame_waves"] = lambda: frame_waves(waves, c.window, T, cfg.hop_length, cfg.preemphasis)
        stages["rfft (cuFFT)"] = lambda f=frames: torch.fft.rfft(f)
        stages["triton post-FFT"] = lambda s=spec: mfcc_from_spectrum(s, c.mel, c.groups, c.dct, c.delta_start,
                                                                      c.delta_coef, cfg.amin, c.ref_db, cfg.top_db)
    if our_fn("fd_mfcc", "cuda") is not None:
        ops = torch.ops.ddfad
        frames = ops.frame_waves(waves, c.window, T, cfg.hop_length, float(cfg.preemphasis))
        spec = torch.fft.rfft(frames).view(B, T, cfg.n_freqs)
        stages["cuda frame_waves"] = lambda: ops.frame_waves(waves, c.window, T, cfg.hop_length,
                                                             float(cfg.preemphasis))
        stages["cuda post-FFT"] = lambda s=spec: ops.mfcc_post(s, c.mel, c.bands, c.dct, c.delta_start, c.delta_coef,
                                                               float(cfg.amin), c.ref_db, cfg.top_db)
        if gb.fused_stft_supported(cfg.n_fft):
            tw = gb.dsp.as_tensor(gb.fft_twiddles(cfg.n_fft), torch.float32, waves.device)
            for tile, radix in ((0, 0), (16, 8), (4, 8), (0, 4), (0, 16)):
                stages[f"cuda fd_mfcc_fused tile={tile or 'auto'} radix={radix or 'auto'}"] = (
                    lambda t=tile, r=radix: ops.fd_mfcc_fused(waves, c.window, tw, c.mel, c.bands, c.dct,
                                                              c.delta_start, c.delta_coef, T, cfg.hop_length,
                                                              float(cfg.preemphasis), float(cfg.amin), c.ref_db,
                                                              cfg.top_db, t, r))
    for name, fn in stages.items():
        try:
            rows.append({"op": "fd_mfcc stage", "preset": preset, "B": B, "impl": name,
                         **cuda_time_ms(fn, repeats)})
        except Exception as exc:
            rows.append({"op": "fd_mfcc stage", "preset": preset, "B": B, "impl": name, "error": repr(exc)[:300]})


def bench_griffin_lim(rows: List[Dict], preset: str, cfg: FeatureConfig, B: int, repeats: int, copy_gbs: float,
                      with_reference: bool) -> None:
    L, T, F = cfg.fixed_length, cfg.n_frames(cfg.fixed_length), cfg.n_freqs
    gen = torch.Generator("cuda").manual_seed(B + 1)
    mag = torch.rand(B, F, T, device="cuda", generator=gen)
    phase = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, device="cuda", generator=gen))
    nbytes = 36 * B * F * T + 8 * B * L
    args = (cfg.n_fft, cfg.hop_length, cfg.win_length, "hann", N_ITER, 0.99, phase, L)
    variants: Dict[str, Callable[[], object]] = {}
    tri = our_fn("griffin_lim", "triton")
    if tri is not None:
        variants["triton"] = lambda: tri(mag, *args)
    cu = our_fn("griffin_lim", "cuda")
    if cu is not None:
        variants["cuda"] = lambda: cu(mag, *args)
        if gb.fused_gla_supported(cfg.n_fft, cfg.hop_length, torch.float32):
            for tile, radix in ((4, 8), (16, 8), (8, 4), (8, 16), (16, 16)):    # the default is (8, 8)
                variants[f"cuda tile={tile} radix={radix}"] = (
                    lambda t=tile, r=radix: cu(mag, *args, tile_frames=t, max_radix=r))
            variants["cuda cuFFT path"] = lambda: cu(mag, *args, tile_frames=-1)
    for name, fn in variants.items():
        measure(rows, "griffin_lim", preset, B, name, fn, nbytes, N_ITER, repeats, copy_gbs)
    for name in ("triton", "cuda"):
        if name in variants:
            try:
                replay = graph_of(variants[name])
                measure(rows, "griffin_lim graph", preset, B, name, replay, nbytes, N_ITER, repeats, copy_gbs,
                        extra={"captured_iterations": N_ITER})
            except Exception as exc:
                rows.append({"op": "griffin_lim graph", "preset": preset, "B": B, "impl": name,
                             "error": f"{type(exc).__name__}: {exc}"[:300]})
    tg = torchaudio_griffin_lim(cfg, N_ITER, 0.99, "cuda")
    if tg is not None:
        measure(rows, "griffin_lim", preset, B, "torchaudio", lambda: tg(mag), nbytes, N_ITER, max(5, repeats // 4),
                copy_gbs)
    if with_reference:
        measure(rows, "griffin_lim", preset, B, "reference", lambda: ref.griffin_lim(mag, *args), nbytes, N_ITER,
                max(5, repeats // 4), copy_gbs)
    del mag, phase
    torch.cuda.empty_cache()


def bench_gla_stages(rows: List[Dict], preset: str, cfg: FeatureConfig, B: int, repeats: int) -> None:
    """One iteration stage by stage: the Triton pair pipeline, the per-frame cuFFT stages, the fused kernel."""
    L, T, F, n_fft, hop = cfg.fixed_length, cfg.n_frames(cfg.fixed_length), cfg.n_freqs, cfg.n_fft, cfg.hop_length
    mag = torch.rand(B, T, F, device="cuda")
    x = torch.polar(mag, 2 * math.pi * torch.rand_like(mag))
    torch.view_as_real(x)[:, :, 0, 1] = 0
    torch.view_as_real(x)[:, :, -1, 1] = 0
    win, inv_env = gb.gla_tensors(n_fft, hop, cfg.win_length, "hann", T, torch.float32, x.device, unscaled=True)
    frames = torch.fft.irfft(x, n=n_fft, norm="forward")
    stages: Dict[str, Callable[[], object]] = {
        "irfft C2R norm=forward (torch clones the input)": lambda: torch.fft.irfft(x, n=n_fft, norm="forward"),
        "irfft C2R default norm (+ a scaling pass)": lambda: torch.fft.irfft(x, n=n_fft),
        "irfft C2R out= (+ a copy)": lambda: torch.fft.irfft(x, n=n_fft, norm="forward", out=frames),
        "rfft R2C": lambda: torch.fft.rfft(frames),
    }
    if our_fn("griffin_lim", "triton") is not None:
        from ddfad_fast.kernels.griffin_lim import gla_step_pairs, overlap_add_pairs, pack_pairs
        z_spec = pack_pairs(x.view(B * T, F), n_fft)
        z = torch.fft.ifft(z_spec, norm="forward")
        w = torch.zeros_like(z_spec)
        w_prev = torch.fft.fft(w)
        params = torch.tensor([0.99 / 1.99, torch.finfo(torch.float32).tiny], device="cuda")
        rows_mag = mag.view(B * T, F)
        stages["pairs: ifft C2C"] = lambda: torch.fft.ifft(z_spec, norm="forward")
        stages["pairs: triton overlap_add reframe"] = lambda: overlap_add_pairs(z, win, inv_env, B, T, hop, L, w, True)
        stages["pairs: fft C2C"] = lambda: torch.fft.fft(w)
        stages["pairs: triton gla_step"] = lambda: gla_step_pairs(z_spec, w_prev, w_prev, rows_mag, params)
    if our_fn("griffin_lim", "cuda") is not None and gb.fused_gla_supported(n_fft, hop, torch.float32):
        tw = gb.dsp.as_tensor(gb.fft_twiddles(n_fft), torch.float32, x.device)
        win_p, env_p = gb.gla_tensors(n_fft, hop, cfg.win_length, "hann", T, torch.float32, x.device)
        out, prev = torch.empty_like(x), torch.zeros_like(x)
        for tile, radix in ((0, 0), (8, 16), (8, 4)):
            stages[f"cuda gla_fused_step tile={tile or 'auto'} radix={radix or 'auto'}"] = (
                lambda t=tile, r=radix: torch.ops.ddfad.gla_fused_step(x, out, prev, mag, win_p, env_p, tw, n_fft,
                                                                       hop, L, 0.99, t, r))
    for name, fn in stages.items():
        try:
            rows.append({"op": "griffin_lim stage", "preset": preset, "B": B, "impl": name,
                         **cuda_time_ms(fn, repeats)})
        except Exception as exc:
            rows.append({"op": "griffin_lim stage", "preset": preset, "B": B, "impl": name, "error": repr(exc)[:300]})
    del mag, x, frames
    torch.cuda.empty_cache()


# ---- verdicts ------------------------------------------------------------------------------------
def winners(rows: List[Dict]) -> Dict[str, Dict[str, object]]:
    """Fastest of our backends per (op, preset, B), overall per op (by the sum of ms over cases), and the
    fastest CUDA variant (frames per block, FFT radix) per case, to set the op's defaults from."""
    out: Dict[str, Dict[str, object]] = {}
    for op in ("fd_mfcc", "griffin_lim"):
        per_case, totals, variants = {}, {}, {}
        for key in sorted({(r["preset"], r["B"]) for r in rows if r["op"] == op}):
            case = [r for r in rows if r["op"] == op and (r["preset"], r["B"]) == key and "ms" in r]
            times = {r["impl"]: r["ms"] for r in case if r["impl"] in OURS}
            if times:
                per_case[f"{key[0]} B={key[1]}"] = min(times, key=times.get)
                for k, v in times.items():
                    totals[k] = totals.get(k, 0.0) + v
            cuda = {r["impl"]: r["ms"] for r in case if r["impl"].startswith("cuda")}
            if cuda:
                variants[f"{key[0]} B={key[1]}"] = min(cuda, key=cuda.get)
        if totals:
            out[op] = {"per_case": per_case, "preference": sorted(totals, key=totals.get),
                       "fastest_cuda_variant": variants}
    return out


def targets(rows: List[Dict], copy_gbs: float) -> List[Dict[str, object]]:
    """The issue's targets at B=1024, speech16k (H100): met or not, with the numbers."""
    def ms(op, impl):
        r = [x for x in rows if x["op"] == op and x["impl"] == impl and x["preset"] == "speech16k"
             and x["B"] == 1024 and "ms" in x]
        return r[0]["ms"] if r else None

    out = []
    ta_mfcc, ta_gla = ms("fd_mfcc", "torchaudio"), ms("griffin_lim", "torchaudio")
    for impl in OURS:
        m = ms("fd_mfcc", impl)
        if m is not None:
            out.append({"target": f"fd_mfcc {impl} <= 0.5 ms", "value_ms": m, "met": m <= 0.5})
            if ta_mfcc:
                out.append({"target": f"fd_mfcc {impl} >= 3x torchaudio", "value": ta_mfcc / m,
                            "met": ta_mfcc / m >= 3})
        for op in ("griffin_lim", "griffin_lim graph"):
            g = ms(op, impl)
            if g is None:
                continue
            cfg = PRESETS["speech16k"]
            floor_ms = (36 * 1024 * cfg.n_freqs * cfg.n_frames(16000) + 8 * 1024 * 16000) / (copy_gbs * 1e9) * 1e3
            out.append({"target": f"{op} {impl}: iteration >= 60% of floor", "value": floor_ms / g,
                        "value_ms": g, "floor_ms": floor_ms, "met": floor_ms / g >= 0.6})
            out.append({"target": f"{op} {impl}: iteration <= 0.74 ms", "value_ms": g, "met": g <= 0.74})
            if ta_gla:
                out.append({"target": f"{op} {impl}: >= 2.5x torchaudio", "value": ta_gla / g,
                            "met": ta_gla / g >= 2.5})
    for impl in OURS:
        cap = [x for x in rows if x["op"] == "griffin_lim graph" and x["impl"] == impl]
        if cap:
            out.append({"target": f"griffin_lim {impl}: 32 iterations captured in a CUDA graph",
                        "met": all("ms" in x for x in cap)})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no stage breakdown (smoke test)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device, nothing to measure")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    repeats = 5 if args.quick else max(20, args.repeats)
    copy_gbs = copy_bandwidth_gbs()
    print(f"device-to-device copy bandwidth: {copy_gbs:.0f} GB/s")
    print("backends:", {op: dispatch.candidates(op, "cuda", torch.float32) for op in ("fd_mfcc", "griffin_lim")})
    rows: List[Dict] = []
    for preset, cfg in PRESETS.items():
        for B in args.batches:
            print(f"-- {preset} B={B}", flush=True)
            bench_fd_mfcc(rows, preset, cfg, B, repeats, copy_gbs)
            bench_griffin_lim(rows, preset, cfg, B, repeats, copy_gbs, with_reference=not args.quick)
            if not args.quick and B == max(args.batches):
                bench_fd_mfcc_stages(rows, preset, cfg, B, repeats)
                bench_gla_stages(rows, preset, cfg, B, repeats)
    add_ratios(rows)
    main_rows = [r for r in rows if "stage" not in r["op"]]
    print_table(main_rows, ["op", "preset", "B", "impl", "ms", "x_vs_torchaudio", "GB/s", "frac_of_floor",
                            "pipeline_frac", "peak_extra_MB", "error"])
    stage_rows = [r for r in rows if "stage" in r["op"]]
    if stage_rows:
        print()
        print_table(stage_rows, ["op", "preset", "B", "impl", "ms", "ms_min", "error"])
    win = winners(rows)
    tgt = targets(rows, copy_gbs)
    print()
    for op, w in win.items():
        print(f"winner {op}: {w['preference'][0]}  (dispatch.set_preference({op!r}, 'cuda', "
              f"{tuple(w['preference'])}))  per case: {w['per_case']}  fastest cuda variant: "
              f"{w['fastest_cuda_variant']}")
    print()
    for t in tgt:
        detail = ", ".join(f"{k}={v:.4g}" for k, v in t.items() if isinstance(v, float))
        print(f"[{'MET' if t['met'] else 'MISSED'}] {t['target']}  {detail}")
    path = write_json("gpu_bench", rows, {"copy_bandwidth_GBs": copy_gbs, "n_iter": N_ITER, "winners": win,
                                          "targets": tgt}, out_dir=args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
