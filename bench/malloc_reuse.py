"""Training speed with glibc's allocator defaults against :func:`ddfad_fast.resources.keep_freed_memory`.

Each measurement is a fresh process (the allocator setting is process-wide), alternating the two settings
``--repeats`` times; the timed part follows a warm-up that compiles the steps. Workloads, on FSDD-shaped
features (3, 20, 101), width-32 ConvNet, 2 threads:

* ``evaluate``: :func:`ddfad_fast.train.evaluate.evaluate_training_set` of 100 clips (the cpu-small
  evaluation: compiled steps, augmentation, batches of 100), 2 nets x ``--steps`` SGD steps;
* ``distill``: :func:`ddfad_fast.train.unroll.unroll` (reverse mode, compiled stepper) of 100 clips, 20 student
  steps, ``--iterations`` iterations.

Prints a table (median wall seconds per net-step or per iteration, the kernel's share of the CPU time,
minor page faults, peak RSS) and writes bench/results/malloc_reuse.json (machine facts, load average, git
commit).

    python bench/malloc_reuse.py
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = ("system defaults", "keep_freed_memory")


def _evaluate(steps: int) -> float:
    import dataclasses
    import torch
    from ddfad_fast.presets import get_preset
    from ddfad_fast.train.evaluate import evaluate_training_set
    gen = torch.Generator().manual_seed(0)
    preset = get_preset("cpu-small")
    x, y = torch.randn(100, 3, 20, 101, generator=gen), torch.arange(10).repeat(10)
    xt, yt = torch.randn(300, 3, 20, 101, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    model = preset.expert.model
    evaluate_training_set(x, y, xt, yt, model, dataclasses.replace(preset.eval, num_nets=1, steps=5, epochs=5))
    config = dataclasses.replace(preset.eval, num_nets=2, steps=steps, epochs=steps)
    start = time.perf_counter()
    evaluate_training_set(x, y, xt, yt, model, config, lr=0.02, x_val=xt, y_val=yt)
    return (time.perf_counter() - start) / (2 * steps)


def _distill(iterations: int) -> float:
    import torch
    from ddfad_fast.config import Augment, ModelConfig
    from ddfad_fast.train.models import build_model
    from ddfad_fast.train.unroll import Stepper, make_plan, unroll
    gen = torch.Generator().manual_seed(0)
    net = build_model(ModelConfig(width=32, depth=3), (3, 20, 101), 10)
    x, y = torch.randn(100, 3, 20, 101, generator=gen), torch.arange(10).repeat(10)
    theta0 = net.init_params(gen)
    target = theta0 + 0.01 * torch.randn(theta0.shape, generator=gen)
    stepper, augment, alpha = Stepper(net, compile=True), Augment(freq_mask=3, max_shift=8, time_mask=10), torch.tensor(0.01)

    def once():
        plan = make_plan(100, None, 20, gen, True)
        unroll(net, x, y, alpha, theta0, target, plan, "reverse", augment, stepper)

    once()
    start = time.perf_counter()
    for _ in range(iterations):
        once()
    return (time.perf_counter() - start) / iterations


def child(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(2)
    if args.child == SETTINGS[1]:
        from ddfad_fast.resources import keep_freed_memory
        assert keep_freed_memory(), "keep_freed_memory did not take effect"
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = _evaluate(args.steps) if args.workload == "evaluate" else _distill(args.iterations)
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print(json.dumps({"seconds": seconds, "system_share": system / max(user + system, 1e-9),
                      "minor_faults": after.ru_minflt - before.ru_minflt, "peak_rss_mb": after.ru_maxrss / 1024}))


def main(args: argparse.Namespace) -> None:
    from _common import print_table, write_json
    rows = []
    for workload, unit in (("evaluate", "net-step"), ("distill", "iteration")):
        runs = {s: [] for s in SETTINGS}
        for _ in range(args.repeats):
            for setting in SETTINGS:
                cmd = [sys.executable, __file__, "--child", setting, "--workload", workload,
                       "--steps", str(args.steps), "--iterations", str(args.iterations)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs[setting].append(json.loads(out.strip().splitlines()[-1]))
        base = statistics.median(r["seconds"] for r in runs[SETTINGS[0]])
        for setting in SETTINGS:
            rs = runs[setting]
            median = statistics.median(r["seconds"] for r in rs)
            rows.append({"workload": workload, "setting": setting, "unit": unit,
                         "median_ms": round(1000 * median, 1), "speedup": round(base / median, 2),
                         "runs_ms": [round(1000 * r["seconds"], 1) for r in rs],
                         "system_share": round(statistics.median(r["system_share"] for r in rs), 3),
                         "minor_faults": int(statistics.median(r["minor_faults"] for r in rs)),
                         "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rs))})
    print_table(rows, ["workload", "setting", "unit", "median_ms", "speedup", "system_share", "minor_faults",
                       "peak_rss_mb"])
    path = write_json("malloc_reuse", rows, {"steps": args.steps, "iterations": args.iterations,
                                             "repeats": args.repeats, "threads": 2})
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting and workload")
    parser.add_argument("--steps", type=int, default=100, help="SGD steps per evaluation net")
    parser.add_argument("--iterations", type=int, default=3, help="distillation iterations")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=("evaluate", "distill"), help=argparse.SUPPRESS)
    ARGS = parser.parse_args()
    child(ARGS) if ARGS.child else main(ARGS)
