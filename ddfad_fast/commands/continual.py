"""``ddfad continual --run RUN``: class-incremental learning with a replay memory of K clips per class.

Takes a finished ``ddfad run`` folder (its data, preset, experts and the distilled set of ``--cpc``), builds a
seeded task sequence per seed (``--tasks``), and compares three memories of ``--memory`` clips per class —
the distilled set (its first K clips per class, with their class labels and trained at its learned step
size, as ``ddfad run`` evaluates it), random real clips, a herding coreset — under the GDumb and
fine-tuning protocols (:mod:`ddfad_fast.continual`). Accuracy on the test clips of the seen classes after
each task, mean ± std over ``--seeds``. Resumable: every (protocol, memory, seed) curve is saved as it
finishes in OUT/continual.json; ``--resume`` keeps them. Writes OUT/report.md, report.json and
accuracy_per_task.png (default OUT: RUN/continual).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from ..errors import ParameterError

HELP = "continual learning: replay memories (distilled / random / herding) over a class-incremental task sequence"
MEMORIES = ("distilled", "random", "herding")
RESULTS_NAME = "continual.json"


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


def _summary(curves: list) -> dict:
    per_task = list(zip(*curves))
    means = [statistics.fmean(v) for v in per_task]
    over_tasks = [statistics.fmean(c) for c in curves]
    return {"curves": curves, "mean": means, "std": [statistics.pstdev(v) for v in per_task],
            "mean_over_tasks": statistics.fmean(over_tasks), "std_over_tasks": statistics.pstdev(over_tasks)}


def _markdown(results: dict) -> str:
    lines = [f"# Continual learning ({results['memory']} clips per class in memory, {results['tasks']} tasks, "
             f"{results['seeds']} seeds)", "",
             f"Run: `{results['run']}`; distilled set: CPC {results['cpc']}. Test split, accuracy on the classes "
             "seen so far after each task, mean ± std over the seeds (task orders and net seeds).", ""]
    for protocol in results["protocols"]:
        rows = results["results"].get(protocol, {})
        names = [m for m in MEMORIES if m in rows]
        lines += [f"## {protocol}", "", "| after task | classes seen | " + " | ".join(names) + " |",
                  "|---:|---:|" + "---:|" * len(names)]
        for t in range(results["tasks"]):
            seen = sum(results["task_sizes"][:t + 1])
            cells = [f"{100 * rows[m]['mean'][t]:.2f} ± {100 * rows[m]['std'][t]:.2f}" for m in names]
            lines.append(f"| {t + 1} | {seen} | " + " | ".join(cells) + " |")
        cells = [f"{100 * rows[m]['mean_over_tasks']:.2f} ± {100 * rows[m]['std_over_tasks']:.2f}" for m in names]
        lines += ["| mean over tasks | | " + " | ".join(cells) + " |", ""]
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: Path) -> None:
    from ..report import _save_figure, pyplot
    plt = pyplot()
    if plt is None:
        return
    protocols = results["protocols"]
    fig, axes = plt.subplots(1, len(protocols), figsize=(5 * len(protocols), 3.6), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        for name, row in results["results"].get(protocol, {}).items():
            tasks = range(1, len(row["mean"]) + 1)
            mean = [100 * v for v in row["mean"]]
            std = [100 * v for v in row["std"]]
            ax.errorbar(tasks, mean, yerr=std, marker="o", capsize=3, label=name)
        ax.set(title=protocol, xlabel="after task", ylabel="test accuracy on seen classes (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    _save_figure(fig, path)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    from ..continual import PROTOCOLS, finetune, gdumb, task_sequence
    from ..evaluate import herding_subset, random_real_subset
    from ..experts import load_trajectories
    from ..io import atomic_write_json, atomic_write_text
    from ..models import build_model
    from . import saved_progress
    from .run import finished_run, load_distilled, run_split

    run, preset, cpc = finished_run(args.run, args.cpc)
    memory = args.memory if args.memory is not None else cpc
    if not 1 <= memory <= cpc:
        raise ParameterError(f"--memory must be in [1, {cpc}] (the distilled set's clips per class), got {memory}")
    protocols = [p for p in args.protocols.split(",") if p]
    if not protocols or set(protocols) - set(PROTOCOLS):
        raise ParameterError(f"--protocols must name some of {PROTOCOLS}, got {args.protocols!r}")
    if args.seeds < 1:
        raise ParameterError(f"--seeds must be >= 1, got {args.seeds}")
    out = args.out or args.run / "continual"
    results_file = out / RESULTS_NAME
    settings = {"run": str(args.run), "cpc": cpc, "memory": memory, "tasks": args.tasks, "seeds": args.seeds,
                "epochs_per_task": args.epochs_per_task}
    done = (saved_progress(results_file, settings, args.resume) or {}).get("curves", {})
    out.mkdir(parents=True, exist_ok=True)

    split = run_split(args.run, run, preset, args.device)
    distilled = load_distilled(args.run / f"cpc{cpc}" / "distilled.pt")
    labels = distilled["labels"]
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:memory] for c in range(split.num_classes)])
    trajectories = load_trajectories(args.run / "experts", preset.features)
    embed = build_model(preset.expert.model, split.in_shape, split.num_classes)
    memories = {"distilled": (distilled["features"][keep].to(args.device), labels[keep].to(args.device)),
                "random": random_real_subset(split.x_train, split.y_train, memory, seed=preset.eval.seed),
                "herding": herding_subset(split.x_train, split.y_train, memory, embed, trajectories.params[0][-1])}
    alpha = distilled["alpha"]
    test = (split.x_test, split.y_test)
    model = preset.expert.model
    task_orders = [task_sequence(split.num_classes, args.tasks, seed) for seed in range(args.seeds)]
    task_sizes = [len(t) for t in task_orders[0]]
    for protocol in protocols:
        for name in MEMORIES:
            for seed, tasks in enumerate(task_orders):
                key = f"{protocol}/{name}/{seed}"
                if key in done:
                    continue
                if protocol == "gdumb":
                    curve = gdumb(memories[name], test, tasks, model, preset.eval, seed,
                                  lr=alpha if name == "distilled" else None)
                else:
                    curve = finetune(memories[name], (split.x_train, split.y_train), test, tasks, model, preset.eval,
                                     args.epochs_per_task, seed, split.num_classes)
                done[key] = curve
                atomic_write_json(results_file, {"settings": settings, "curves": done})
                print(f"{protocol:8s} {name:9s} seed {seed}: " + " ".join(f"{100 * a:.1f}" for a in curve), flush=True)
    results = dict(settings, protocols=protocols, task_sizes=task_sizes,
                   results={p: {m: _summary([done[f"{p}/{m}/{s}"] for s in range(args.seeds)]) for m in MEMORIES}
                            for p in protocols},
                   distilled_lr=alpha, reported_split="test")
    atomic_write_json(out / "report.json", results)
    atomic_write_text(out / "report.md", _markdown(results))
    _plot(results, out / "accuracy_per_task.png")
    for protocol in protocols:
        row = results["results"][protocol]
        print(f"{protocol}: mean over tasks " + ", ".join(
            f"{m} {100 * row[m]['mean_over_tasks']:.2f} %" for m in MEMORIES))
    print(f"report: {out / 'report.md'}")
    return 0
