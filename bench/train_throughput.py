"""Training throughput of small classifiers: one net after another (eager or compiled step) vs an ensemble
of R nets trained as one batched computation (``torch.func.stack_module_state``-style stacked flat
parameters, ``torch.func.vmap`` over our functional model: grouped convolutions underneath).

Every mode runs the same work: R ConvNets (depth 3) each take SGD steps on their own batch of FSDD-shaped
clips (3, 20, 101), with the augmentation of the presets drawn per net, on the batch size of the preset's
protocol for that training set: CPC 10 (100 clips, batches of 100), CPC 50 (500 clips, batches of 128),
full data (2,400 clips, batches of 64). Each row is the median over ``--repeats`` timings of
``--steps`` steps of all R nets, after one untimed warm-up (which includes compilation: its seconds are
recorded). ``nets/s`` = net-steps per second / the steps of one net in the preset (300 for CPC sets,
20 epochs x 38 steps for full data): how many evaluation nets a second the mode would finish.

* ``one-by-one``: :func:`ddfad_fast.train.sgd.sgd_epoch`'s step (``training_stepper(net, compile=False)``).
* ``one-by-one compiled``: the same step compiled with torch.compile (``training_stepper(net, True)``).
* ``ensemble vmap``: all R nets in one forward/backward (vmap of the same functional model).

    python bench/train_throughput.py                 # table + bench/results/train_throughput.json
    python bench/train_throughput.py --quick         # R 1/5, width 32, CPC 10 only
    python bench/train_throughput.py --device cuda --name train_throughput_gpu
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, sync, time_call, write_json  # noqa: E402

from ddfad_fast.config import ModelConfig  # noqa: E402
from ddfad_fast.train.sgd import augment_draws, training_stepper  # noqa: E402
from ddfad_fast.train.models import build_model  # noqa: E402
from ddfad_fast.presets import AUGMENT  # noqa: E402
from ddfad_fast.train.unroll import functional_grad_and_loss  # noqa: E402

IN_SHAPE, CLASSES = (3, 20, 101), 10
SETS = {"cpc10": (100, 100, 300), "cpc50": (500, 128, 300), "full": (2400, 64, 20 * 38)}   # clips, batch, steps


def _problem(r: int, n: int, width: int):
    net = build_model(ModelConfig(width=width, depth=3), IN_SHAPE, CLASSES)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, *IN_SHAPE, generator=gen).to(ARGS.device)
    y = (torch.arange(n) % CLASSES).to(ARGS.device)
    params = torch.stack([net.init_params(torch.Generator().manual_seed(i)) for i in range(r)]).to(ARGS.device)
    gens = [torch.Generator().manual_seed(100 + i) for i in range(r)]
    return net, x, y, params, gens


def _batches(gens, n: int, batch: int, x, y):
    """Per net: its own batch indices and augmentation draws (as sgd_epoch draws them)."""
    out = []
    for gen in gens:
        idx = torch.randperm(n, generator=gen)[:batch].to(x.device)
        aug = augment_draws(AUGMENT, gen, batch, IN_SHAPE[1], IN_SHAPE[2], x.dtype, x.device)
        out.append((x[idx], y[idx], aug))
    return out


def one_by_one(compile_: bool):
    def make(net, x, y, params, gens, n, batch, steps):
        stepper = training_stepper(net, compile_)

        def run():
            for _ in range(steps):
                for r, (xb, yb, aug) in enumerate(_batches(gens, n, batch, x, y)):
                    grad, _ = stepper.grad_and_loss(params[r], xb, yb, aug)
                    params[r].sub_(0.01 * grad)
            if compile_ and not stepper.compiled:
                raise RuntimeError(f"torch.compile failed: {stepper.compile_error}")
        return run
    return make


def ensemble_vmap(net, x, y, params, gens, n, batch, steps):
    grad_all = torch.func.vmap(functional_grad_and_loss(net))

    def run():
        for _ in range(steps):
            draws = _batches(gens, n, batch, x, y)
            xb = torch.stack([d[0] for d in draws])
            yb = torch.stack([d[1] for d in draws])
            index = torch.stack([d[2][0] for d in draws])
            mask = torch.stack([d[2][1] for d in draws])
            params.sub_(0.01 * grad_all(params, xb, yb, index, mask)[0])
    return run


MODES = {"one-by-one": one_by_one(False), "one-by-one compiled": one_by_one(True), "ensemble vmap": ensemble_vmap}


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    rows = []
    for width in ARGS.widths:
        for set_name in ARGS.sets:
            n, batch, protocol_steps = SETS[set_name]
            for r in ARGS.nets:
                base = None
                for mode, make in MODES.items():
                    net, x, y, params, gens = _problem(r, n, width)
                    run = make(net, x, y, params, gens, n, batch, ARGS.steps)
                    start = time.perf_counter()
                    run()                                             # warm-up (compilation)
                    sync(ARGS.device)
                    warmup_s = time.perf_counter() - start
                    seconds = time_call(run, repeats=ARGS.repeats, warmup=0, device=ARGS.device)["median_s"]
                    net_steps_per_s = r * ARGS.steps / seconds
                    base = base or net_steps_per_s
                    rows.append({"width": width, "set": set_name, "batch": batch, "R": r, "mode": mode,
                                 "net-steps/s": net_steps_per_s, "nets/s": net_steps_per_s / protocol_steps,
                                 "x one-by-one": net_steps_per_s / base, "warm-up s": warmup_s})
                    print_table(rows[-1:], list(rows[-1]))
    columns = ["width", "set", "batch", "R", "mode", "net-steps/s", "nets/s", "x one-by-one", "warm-up s"]
    print_table(rows, columns)
    write_json(ARGS.name, rows, {"device": ARGS.device, "threads": ARGS.threads, "steps": ARGS.steps, "repeats": ARGS.repeats,
                                 "sets": {k: dict(zip(("clips", "batch", "protocol_steps"), v)) for k, v in SETS.items()}})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--steps", type=int, default=1, help="timed SGD steps of every net per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="R 1/5, width 32, CPC 10")
    parser.add_argument("--name", default="train_throughput", help="JSON name in bench/results")
    ARGS = parser.parse_args()
    if ARGS.quick:
        ARGS.nets, ARGS.widths, ARGS.sets = [1, 5], [32], ["cpc10"]
    main()
