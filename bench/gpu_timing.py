"""Timing on a GPU for bench/gpu_bench.py: device time separated from host time, inputs that are not served
from L2, CUDA graphs, per-kernel profiles, floors.

* ``device_ms``: N calls back to back between two CUDA events (the GPU's time per call when the host keeps
  ahead of it), inputs rotated through enough buffers that the batch in flight is never in the 60 MB L2.
* ``graph_ms``: the same N calls captured in one CUDA graph and replayed: device time with no host in it.
* ``host_us``: wall time of the N enqueues alone (perf_counter, no synchronisation inside): the host's cost.
* ``latency_ms``: one synchronised call from an idle GPU (what a single caller waits).
* ``kernel_table``: torch.profiler's CUDA kernels of a few calls (name, calls, device microseconds).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch

L2_BYTES = 60 * 2 ** 20          # H100 / H200 L2; rotated inputs span at least twice this
HBM_DATASHEET_GBS = 4800.0       # H200 (the H100 SXM: 3350)


def warm_clocks(ms: float = 200.0) -> None:
    """Run matrix products for ``ms`` so the SM clock ramps from idle (345 MHz) to boost before timing."""
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    while (time.perf_counter() - start) * 1e3 < ms:
        for _ in range(10):
            a = a @ a
            a = a / a.abs().amax()
        torch.cuda.synchronize()


def rotated(make: Callable[[int], torch.Tensor], nbytes: int, minimum: int = 3) -> List[torch.Tensor]:
    """Input buffers ``make(i)`` so that cycling through them never meets a batch still in L2 (>= 3, >= 2 x L2)."""
    count = max(minimum, -(-2 * L2_BYTES // max(1, nbytes)))
    return [make(i) for i in range(min(count, 512))]


def _events(fn: Callable[[], object], calls: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def device_ms(step: Callable[[int], object], calls: int = 30, repeats: int = 5) -> Dict[str, float]:
    """Median over ``repeats`` of the per-call time of ``calls`` back-to-back calls ``step(i)`` (i: the call's
    index, to rotate inputs), after one warm-up round; and the host's enqueue time per call (us)."""
    counter = iter(range(10 ** 9))
    fn = lambda: step(next(counter))  # noqa: E731
    _events(fn, calls)
    times, host = [], []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        host.append((time.perf_counter() - t0) * 1e6 / calls)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times),
            "host_us": statistics.median(host)}


def latency_ms(fn: Callable[[], object], repeats: int = 10) -> float:
    """Median wall milliseconds of one call from an idle GPU to its result (synchronised)."""
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def graph_ms(step: Callable[[int], object], n_inputs: int, calls: int = 30, repeats: int = 5) -> Dict[str, float]:
    """Per-call device time of ``calls`` calls captured in one CUDA graph (inputs rotated inside it), replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(2):
            step(i % n_inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            step(i % n_inputs)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    t0 = time.perf_counter()
    graph.replay()
    host = (time.perf_counter() - t0) * 1e6
    torch.cuda.synchronize()
    del graph
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "replay_host_us": host}


def kernel_table(fn: Callable[[], object], calls: int = 5) -> List[Dict[str, object]]:
    """The CUDA kernels of ``calls`` calls of ``fn`` (after one warm-up): name, launches per call, device us per call."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages():
        device_us = getattr(evt, "device_time_total", None)
        if device_us is None:
            device_us = getattr(evt, "cuda_time_total", 0.0)
        if device_us <= 0:
            continue
        rows.append({"kernel": evt.key[:120], "calls_per_call": evt.count / calls, "us_per_call": device_us / calls})
    rows.sort(key=lambda r: -r["us_per_call"])
    return rows[:12]


def triton_resources(jit_functions: Sequence[object]) -> List[Dict[str, object]]:
    """Registers, spills and shared memory of every compiled specialisation of the given Triton kernels."""
    out = []
    for fn in jit_functions:
        caches = getattr(fn, "device_caches", None) or {}
        for entry in caches.values():
            cache = entry[0] if isinstance(entry, tuple) else entry
            for compiled in getattr(cache, "values", lambda: [])():
                meta = getattr(compiled, "metadata", None)
                out.append({"kernel": getattr(fn, "__name__", str(fn)), "n_regs": getattr(compiled, "n_regs", None),
                            "n_spills": getattr(compiled, "n_spills", None),
                            "shared_bytes": getattr(meta, "shared", None),
                            "num_warps": getattr(meta, "num_warps", None)})
    return out
