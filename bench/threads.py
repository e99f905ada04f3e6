"""Training speed vs torch threads, alone and beside another busy process (why ``--threads`` defaults to
the free cores).

Times 20 SGD steps of the width-32 ConvNet on batches of 64 FSDD-shaped clips (3, 20, 101) with 1 thread
and with every core, first on a quiet machine, then while ``--busy`` other processes each spin one core.
Prints a table and writes bench/results/threads.json (median of ``--repeats`` runs, machine facts, load
average, git commit).

    python bench/threads.py
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, time_call, write_json  # noqa: E402

from ddfad_fast.config import ModelConfig  # noqa: E402
from ddfad_fast.train.models import build_model  # noqa: E402


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _steps(threads: int, n_steps: int = 20, batch: int = 64) -> float:
    torch.set_num_threads(threads)
    net = build_model(ModelConfig(width=32, depth=3), (3, 20, 101), 10)
    gen = torch.Generator().manual_seed(0)
    params = net.init_params(gen)
    x, y = torch.randn(batch, 3, 20, 101, generator=gen), torch.randint(0, 10, (batch,), generator=gen)

    def run():
        p = params
        for _ in range(n_steps):
            q = p.detach().requires_grad_()
            g, = torch.autograd.grad(F.cross_entropy(net.forward(q, x), y), q)
            p = p - 0.01 * g

    return time_call(run, repeats=ARGS.repeats, warmup=1)["median_s"]


def main() -> None:
    cores = os.cpu_count() or 1
    rows = []
    for busy in (0, ARGS.busy):
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for proc in spinners:
            proc.start()
        time.sleep(1.0)
        try:
            for threads in sorted({1, max(1, cores - busy), cores}):
                seconds = _steps(threads)
                rows.append({"other busy processes": busy, "threads": threads, "s per 20 steps": seconds})
        finally:
            stop.set()
            for proc in spinners:
                proc.join()
    quiet_best = min(r["s per 20 steps"] for r in rows if r["other busy processes"] == 0)
    for r in rows:
        r["x slower than quiet best"] = r["s per 20 steps"] / quiet_best
    print_table(rows, ["other busy processes", "threads", "s per 20 steps", "x slower than quiet best"])
    write_json("threads", rows, {"repeats": ARGS.repeats, "cores": cores})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, default=1, help="other processes that each spin one core")
    ARGS = parser.parse_args()
    main()
