"""Peak memory and seconds per MTT iteration: naive unroll vs reverse sweep (eager) vs reverse (compiled).

Every case runs in a fresh subprocess under a hard address-space limit (RLIMIT_AS, ``--limit-gb``,
default 10 GiB; other people share the machine): a case that hits it is reported as "OOM > limit",
and naive cases whose peak, extrapolated linearly in N from the two largest N already measured
(``predicted_mb``; the naive mode also runs N in ``--naive-extra-steps`` for that), would exceed the
limit are skipped; ``mem_vs_naive`` then compares with the prediction (``naive_basis``). Each case first runs a warm-up
iteration with N=1 (imports, allocator, compilation of the compiled mode: its seconds are
``compile_s`` and its peak RSS ``warmup_peak_mb``), then resets the kernel's peak-RSS counter
(/proc/self/clear_refs) and runs ``--repeats`` timed full iterations (median ``s_per_iter``).
``peak_mb`` is the process peak RSS (ru_maxrss) of the timed iterations on CPU and
torch.cuda.max_memory_allocated on a GPU; ``base_mb`` the RSS before them; ``unroll_mb`` = peak - base.

Default grid: ConvNet width 128 depth 3 on (3, 20, 101), 10 classes, syn_steps in {10, 20, 40, 80},
CPC in {10, 50}, the whole synthetic set per step unless ``--batch-syn``. ``--model cifar``: MTT's ConvNet
(width 128, depth 3, instance norm) as an ``nn.Module`` on CIFAR-shaped 3x32x32 data, through
``ddfad_fast.train.mtt.match`` (results in mtt_memory_cifar.json).
Usage: python bench/mtt_memory.py [--quick] [--limit-gb 10] [--batch-syn B] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = (("naive", "naive", False), ("reverse-eager", "reverse", False), ("reverse-compiled", "reverse", True))
GIB = 1024 ** 3


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def _vm_peak_mb() -> float:
    """Peak virtual size (what RLIMIT_AS bounds; typically 0.5-1 GB above the RSS with torch loaded)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_case(case: Dict[str, object]) -> Dict[str, object]:
    """One case in this process (called in the child): returns memory and timing numbers."""
    import torch
    from ddfad_fast.config import ModelConfig
    from ddfad_fast.train.models import build_model
    from ddfad_fast.train.unroll import Stepper, make_plan, unroll

    device = str(case["device"])
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    mode = str(case["unroll"])
    if case.get("model") == "cifar":        # any nn.Module through the public API: MTT's ConvNet on 3x32x32
        from ddfad_fast.train import mtt
        net = mtt.ModuleNet(mtt.convnet(3, int(case["classes"]), int(case["width"]), int(case["depth"]), 32))
        theta0 = net.flatten().to(device)
        run_unroll = lambda plan: mtt.match(net, x, y, alpha, theta0, target, plan, unroll_mode=mode,  # noqa: E731
                                            stepper=stepper)
    else:
        net = build_model(ModelConfig(width=int(case["width"]), depth=int(case["depth"])), tuple(case["in_shape"]),
                          int(case["classes"]))
        theta0 = net.init_params(gen).to(device)
        run_unroll = lambda plan: unroll(net, x, y, alpha, theta0, target, plan, mode=mode,  # noqa: E731
                                         stepper=stepper)
    n_syn = int(case["cpc"]) * int(case["classes"])
    x = torch.randn(n_syn, *case["in_shape"], generator=gen).to(device)
    y = (torch.arange(n_syn) % int(case["classes"])).to(device)
    target = theta0 + 0.01 * torch.randn(net.num_params, generator=gen).to(device)
    alpha = torch.tensor(0.01, device=device)
    stepper = Stepper(net, compile=bool(case["compile"]))
    batch = case.get("batch_syn")

    def iteration(steps: int) -> float:
        plan = make_plan(n_syn, batch, steps, torch.Generator().manual_seed(1), augment=False)
        plan.indices = plan.indices.to(device)
        start = time.perf_counter()
        float(run_unroll(plan).loss)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    compile_s = iteration(1)                 # warm-up: imports, allocator, compilation
    warm_peak = _peak_mb()
    from _common import reset_peak
    reset = reset_peak()
    base = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = [iteration(int(case["steps"])) for _ in range(int(case["repeats"]))]
    out = {"s_per_iter": statistics.median(times), "min_s_per_iter": min(times), "compile_s": compile_s,
           "base_mb": base,
           "peak_mb": _peak_mb(), "warmup_peak_mb": warm_peak, "peak_reset": reset, "vm_peak_mb": _vm_peak_mb(),
           "compiled": stepper.compiled, "compile_error": stepper.compile_error}
    out["unroll_mb"] = out["peak_mb"] - base
    if device.startswith("cuda"):
        out["peak_mb"] = out["unroll_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def _child_main(case_json: str) -> int:
    case = json.loads(case_json)
    limit = int(float(case["limit_gb"]) * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch
    torch.set_num_threads(int(case["threads"]))
    try:
        result = {"status": "ok", **run_case(case)}
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if isinstance(exc, MemoryError) or "alloc" in text.lower() or "memory" in text.lower():
            result = {"status": "oom", "error": text.splitlines()[0][:200] if text else "MemoryError"}
        else:
            raise
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _spawn(case: Dict[str, object], timeout: float, omp_wait_policy: str) -> Dict[str, object]:
    """Run one case in a fresh interpreter; never raises for a failing case."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)]
    env = dict(os.environ)
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or "").strip().splitlines()[-3:]
    if proc.returncode < 0 or any("alloc" in t.lower() or "memory" in t.lower() for t in tail):
        return {"status": "oom", "error": " | ".join(tail)[:300]}
    return {"status": "error", "error": " | ".join(tail)[:300]}


def _predicted_peak(done: List[Dict[str, object]], steps: int) -> Optional[float]:
    """Linear extrapolation in N of the peak (MB) from the measured cases of one mode and CPC."""
    pts = sorted((int(r["syn_steps"]), float(r["peak_mb"])) for r in done if r.get("status") == "ok")
    if len(pts) < 2:
        return None
    (n0, m0), (n1, m1) = pts[-2], pts[-1]
    slope = (m1 - m0) / max(n1 - n0, 1)
    return m1 + slope * (steps - n1)


def _status_label(r: Dict[str, object], limit_gb: float) -> str:
    if r["status"] == "ok":
        return "ok" if r.get("compiled", True) or r["mode"] != "reverse-compiled" else "ok (eager fallback)"
    if r["status"] == "oom":
        return f"OOM > {limit_gb:g} GiB"
    if r["status"] == "skipped_after_oom":
        return f"skipped: smaller N was OOM > {limit_gb:g} GiB"
    if r["status"] == "skipped":
        return f"skipped: predicted {float(r['predicted_mb']) / 1024:.1f} GiB > {limit_gb:g} GiB"
    return str(r["status"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small smoke version (width 16, N in {2, 4}, CPC 2)")
    parser.add_argument("--limit-gb", type=float, default=10.0, help="RLIMIT_AS of every case, GiB (default 10)")
    parser.add_argument("--batch-syn", type=int, default=None, help="synthetic minibatch per step (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="timed iterations per case (median)")
    parser.add_argument("--steps", default=None, help="comma-separated syn_steps (default 10,20,40,80)")
    parser.add_argument("--naive-extra-steps", default=None,
                        help="extra (small) syn_steps for the naive mode, so that its growth in N is measured even "
                             "where the grid's N does not fit the limit (default 2,5; quick: none)")
    parser.add_argument("--cpc", default=None, help="comma-separated clips per class (default 10,50)")
    parser.add_argument("--modes", default=",".join(m for m, _, _ in MODES), help="subset of the modes")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--model", choices=("audio", "cifar"), default="audio",
                        help="audio: our ConvNet on FD-MFCC (3, 20, 101); cifar: MTT's ConvNet nn.Module on 3x32x32 "
                             "through ddfad_fast.train.mtt (any-module API)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per case (default: all cores)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds per case before it is abandoned")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the cases (default PASSIVE: on a CPU shared with other jobs, "
                             "spinning OpenMP threads made 2-thread steps 2-20x slower; '' leaves it unset)")
    parser.add_argument("--name", default=None,
                        help="JSON file name in bench/results (default mtt_memory, quick: mtt_memory_quick)")
    return parser


def _run_mode(args: argparse.Namespace, base_case: Dict[str, object], cpc: int, label: str, unroll_mode: str,
              compiled: bool, steps: List[int]) -> List[Dict[str, object]]:
    """The cases of one mode and CPC in increasing N, skipping those that cannot fit the limit."""
    limit_mb = args.limit_gb * 1024
    done: List[Dict[str, object]] = []
    for n in steps:
        row: Dict[str, object] = {"mode": label, "cpc": cpc, "syn_steps": n, "batch": args.batch_syn or cpc * 10}
        predicted = _predicted_peak(done, n) if unroll_mode == "naive" else None
        if predicted is not None:
            row["predicted_mb"] = predicted
        if predicted is not None and predicted > limit_mb:
            row["status"] = "skipped"
        elif any(r["status"] in ("oom", "skipped_after_oom") for r in done):
            row["status"] = "skipped_after_oom"
        else:
            case = dict(base_case, cpc=cpc, steps=n, unroll=unroll_mode, compile=compiled)
            row["load_before"] = os.getloadavg()[0]
            row.update(_spawn(case, args.timeout, args.omp_wait_policy))
            row["load_after"] = os.getloadavg()[0]
        row["status_text"] = _status_label(row, args.limit_gb)
        print(json.dumps(row), flush=True)
        done.append(row)
    return done


def _compare(rows: List[Dict[str, object]]) -> None:
    """mem_vs_naive / speed_vs_naive against the naive case of the same CPC and N (measured or predicted)."""
    for r in rows:
        ref = next((q for q in rows if q["mode"] == "naive" and q["cpc"] == r["cpc"]
                    and q["syn_steps"] == r["syn_steps"]), None)
        if r["status"] != "ok" or ref is None or r is ref:
            continue
        if ref["status"] == "ok":
            r["mem_vs_naive"] = float(ref["peak_mb"]) / float(r["peak_mb"])
            r["speed_vs_naive"] = float(ref["s_per_iter"]) / float(r["s_per_iter"])
            r["naive_basis"] = "measured"
        elif ref.get("predicted_mb") is not None:
            r["mem_vs_naive"] = float(ref["predicted_mb"]) / float(r["peak_mb"])
            r["naive_basis"] = "predicted"


def main() -> int:
    args = _parser().parse_args()
    if args.case:
        return _child_main(args.case)

    import torch
    from _common import print_table, write_json

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps = [int(s) for s in (args.steps or ("2,4" if args.quick else "10,20,40,80")).split(",")]
    cpcs = [int(s) for s in (args.cpc or ("2" if args.quick else "10,50")).split(",")]
    extra_text = args.naive_extra_steps if args.naive_extra_steps is not None else ("" if args.quick else "2,5")
    extra = [int(s) for s in extra_text.split(",") if s]
    base_case = {"device": device, "width": args.width or (16 if args.quick else 128), "depth": 3,
                 "in_shape": [3, 32, 32] if args.model == "cifar" else [3, 20, 101], "classes": 10,
                 "model": args.model, "batch_syn": args.batch_syn, "repeats": args.repeats,
                 "limit_gb": args.limit_gb, "threads": args.threads or os.cpu_count() or 1}
    rows: List[Dict[str, object]] = []
    for cpc in cpcs:
        for label, unroll_mode, compiled in MODES:
            if label in args.modes.split(","):
                grid = sorted(set(steps) | (set(extra) if unroll_mode == "naive" else set()))
                rows += _run_mode(args, base_case, cpc, label, unroll_mode, compiled, grid)
    _compare(rows)
    print_table(rows, ["mode", "cpc", "batch", "syn_steps", "status_text", "s_per_iter", "compile_s", "peak_mb",
                       "unroll_mb", "predicted_mb", "mem_vs_naive", "naive_basis", "speed_vs_naive"])
    extra_info = {k: v for k, v in base_case.items() if k not in ("limit_gb",)}
    default_name = "mtt_memory" + ("_cifar" if args.model == "cifar" else "") + ("_quick" if args.quick else "")
    path = write_json(args.name or default_name, rows,
                      {**extra_info, "limit_gb": args.limit_gb, "omp_wait_policy": args.omp_wait_policy,
                       "naive_extra_steps": extra})
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
