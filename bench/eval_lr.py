"""Step size of the distilled set's evaluation, on a finished run's VALIDATION split.

A report trains the evaluation nets of a distilled set with its learned step size alpha (MTT's rule) and
those of the real baselines with 0.01. This trains the run's distilled sets, under the run's evaluation
protocol, once per step size named (``alpha`` = the set's learned one) and prints one JSON line per set and
step size (validation accuracy, mean and std over nets); ``--log`` appends them. The test split is not scored.

    python bench/eval_lr.py runs/emodb_report alpha 0.01 --log bench/results/eval_lr.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

from ddfad_fast.apps.run import finished_run, load_distilled, run_split  # noqa: E402
from ddfad_fast.train.evaluate import evaluate_training_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished `ddfad run` folder")
    parser.add_argument("lrs", nargs="+", help="step sizes: 'alpha' (the learned one) or numbers")
    parser.add_argument("--num-nets", type=int, default=None, help="nets per set (default: the run's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run, preset, _ = finished_run(args.run)
    split = run_split(args.run, run, preset, torch.device("cpu"))
    config = preset.eval if args.num_nets is None else preset.eval.replace(num_nets=args.num_nets)
    cpcs = sorted(int(p.name[3:]) for p in args.run.glob("cpc*") if (p / "distilled.pt").is_file())
    for cpc in cpcs:
        current = load_distilled(args.run / f"cpc{cpc}" / "distilled.pt")
        for name in args.lrs:
            lr = current["alpha"] if name == "alpha" else float(name)
            began = time.perf_counter()
            result = evaluate_training_set(current["features"], current["targets"], split.x_val, split.y_val,
                                           preset.expert.model, config, lr=lr)
            row = {"run": str(args.run), "data": run["data"], "cpc": cpc, "lr": name, "lr_value": lr,
                   "split": "val", "val_acc": [result["mean"], result["std"]], "num_nets": config.num_nets,
                   "seconds": time.perf_counter() - began,
                   "machine": {k: v for k, v in machine_info().items()
                               if k in ("date", "git_commit", "cpu_count", "load_average_1_5_15", "torch")}}
            print(json.dumps(row), flush=True)
            if args.log:
                args.log.parent.mkdir(parents=True, exist_ok=True)
                with open(args.log, "a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
