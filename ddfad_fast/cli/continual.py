"""``ddfad continual --run RUN``: class-incremental learning with a replay memory of K clips per class.

Takes a finished ``ddfad run`` folder (its data, preset, experts and the distilled set of ``--cpc``), builds a
seeded task sequence per seed (``--tasks``), and compares three memories of ``--memory`` clips per class —
the distilled set (its first K clips per class, with their class labels and trained at its learned step
size, as ``ddfad run`` evaluates it), random real clips, a herding coreset — under the GDumb and
fine-tuning protocols (:mod:`ddfad_fast.apps.continual`). Accuracy on the test clips of the seen classes after
each task, mean ± std over ``--seeds``. Resumable: every (protocol, memory, seed) curve is saved as it
finishes in OUT/continual.json; ``--resume`` keeps them. Writes OUT/report.md, report.json and
accuracy_per_task.png (default OUT: RUN/continual).
"""
from __future__ import annotations

import argparse
from pathlib import Path


HELP = "continual learning: replay memories (distilled / random / herding) over a class-incremental task sequence"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a finished `ddfad run` folder")
    parser.add_argument("--cpc", type=int, default=None, help="the distilled set to use (default: the largest)")
    parser.add_argument("--memory", type=int, default=None, help="clips per class in memory (default: --cpc)")
    parser.add_argument("--tasks", type=int, default=5, help="tasks the classes are cut into (default 5)")
    parser.add_argument("--seeds", type=int, default=3, help="task orders and net seeds (default 3)")
    parser.add_argument("--protocols", default="gdumb,finetune", help="comma-separated: gdumb,finetune")
    parser.add_argument("--epochs-per-task", type=int, default=5, help="fine-tuning epochs per task (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/continual)")
    parser.add_argument("--resume", action="store_true", help="keep the curves already in OUT/continual.json")


def main(args: argparse.Namespace) -> int:
    from ..apps.continual import MEMORIES, run_continual
    results = run_continual(args.run, cpc=args.cpc, memory=args.memory, tasks=args.tasks, seeds=args.seeds,
                            protocols=[p for p in args.protocols.split(",") if p], epochs_per_task=args.epochs_per_task,
                            out=args.out, resume=args.resume, device=args.device)
    out = args.out or args.run / "continual"
    protocols = results["protocols"]
    for protocol in protocols:
        row = results["results"][protocol]
        print(f"{protocol}: mean over tasks " + ", ".join(
            f"{m} {100 * row[m]['mean_over_tasks']:.2f} %" for m in MEMORIES))
    print(f"report: {out / 'report.md'}")
    return 0
