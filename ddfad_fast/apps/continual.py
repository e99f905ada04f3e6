"""Class-incremental learning with a small replay memory: DDFAD's continual-learning use of a distilled set.

The classes arrive in ``T`` tasks (a seeded order, :func:`task_sequence`); after task ``t`` the learner is
tested on the test clips of every class seen so far. The memory holds ``K`` clips per class, drawn from a
distilled set, random real clips or a herding coreset. Two protocols, as in the dataset-distillation
literature:

* ``gdumb`` (GDumb): after each task a fresh net trains on the memory of the classes seen so far only;
* ``finetune``: one net goes through the tasks, training at task ``t`` on that task's real training clips
  plus the memory of the earlier classes (replay), ``epochs`` epochs per task. The replay is class-balanced:
  each earlier class's K memory clips are repeated to as many clips as a new class brings (without that, a
  few memory clips among hundreds of new ones were forgotten: 12 % after 5 tasks on FSDD).

Both train through the package's one training loop (:func:`ddfad_fast.train.evaluate.evaluate_training_set` and
:func:`ddfad_fast.train.sgd.train_group`), with the evaluation settings of the run.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..config import EvalConfig, ModelConfig
from ..errors import ParameterError
from ..io import atomic_write_json, atomic_write_text, saved_progress
from ..train.evaluate import DEFAULT_LR, evaluate_training_set
from ..train.sgd import NetGroup, accuracy, train_group, training_stepper
from ..train.models import build_model

PROTOCOLS = ("gdumb", "finetune")


def task_sequence(num_classes: int, tasks: int, seed: int) -> List[List[int]]:
    """The classes 0..num_classes-1 in a seeded order, cut into ``tasks`` groups (sizes differ by at most one)."""
    if not 1 <= tasks <= num_classes:
        raise ParameterError(f"tasks must be in [1, {num_classes}] (the number of classes), got {tasks}")
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(int(seed))).tolist()
    size, extra = divmod(num_classes, tasks)
    out, start = [], 0
    for t in range(tasks):
        end = start + size + (1 if t < extra else 0)
        out.append(sorted(order[start:end]))
        start = end
    return out


def of_classes(x: Tensor, y: Tensor, classes: Sequence[int]) -> Tuple[Tensor, Tensor]:
    """The rows of (x, y) whose label is in ``classes``."""
    keep = torch.isin(y, torch.as_tensor(list(classes), device=y.device))
    return x[keep], y[keep]


def gdumb(memory: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor], tasks: List[List[int]],
          model: ModelConfig, config: EvalConfig, seed: int, lr: Optional[float] = None) -> List[float]:
    """Test accuracy on the classes seen so far after each task, a fresh net trained on their memory only."""
    accs, seen = [], []
    for classes in tasks:
        seen += classes
        xm, ym = of_classes(*memory, seen)
        xt, yt = of_classes(*test, seen)
        if len(ym) == 0 or len(yt) == 0:
            raise ParameterError(f"classes {seen} have no memory or no test clips")
        r = evaluate_training_set(xm, ym, xt, yt, model, config.replace(num_nets=1, seed=seed), lr=lr)
        accs.append(r["mean"])
    return accs


def finetune(memory: Tuple[Tensor, Tensor], train: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor],
             tasks: List[List[int]], model: ModelConfig, config: EvalConfig, epochs: int, seed: int,
             num_classes: int) -> List[float]:
    """Test accuracy on the classes seen so far after each task, one net trained through the tasks on each
    task's real clips plus the memory of the earlier classes, repeated to the new classes' clips per class
    (``epochs`` epochs per task)."""
    if epochs < 1:
        raise ParameterError(f"epochs per task must be >= 1, got {epochs}")
    x_train = train[0]
    net = build_model(model, tuple(x_train.shape[1:]), num_classes)
    stepper = training_stepper(net, config.compile)
    group = NetGroup.fresh(net, [seed], x_train.device)
    lr = float(config.lr if config.lr is not None else DEFAULT_LR)
    accs, seen, done = [], [], 0
    for classes in tasks:
        x_new, y_new = of_classes(*train, classes)
        x_old, y_old = of_classes(*memory, seen) if seen else (x_new[:0], y_new[:0])
        if len(y_old):
            repeat = max(1, round(len(y_new) / len(classes) / (len(y_old) / len(seen))))
            x_old, y_old = x_old.repeat(repeat, *([1] * (x_old.dim() - 1))), y_old.repeat(repeat)
        seen += classes
        done += epochs
        train_group(net, group, torch.cat([x_new, x_old]), torch.cat([y_new, y_old]), done, lambda e: lr,
                    config.momentum, config.weight_decay, config.batch_size, config.augment, stepper)
        accs.append(accuracy(net, group.params[0], *of_classes(*test, seen)))
    return accs


# ----------------------------------------------------------------------------- the command's job

MEMORIES = ("distilled", "random", "herding")


RESULTS_NAME = "continual.json"


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
    from .report import pyplot, save_figure
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
    save_figure(fig, path)
    plt.close(fig)


def run_continual(run_dir: Path, cpc: Optional[int] = None, memory: Optional[int] = None, tasks: int = 5,
                  seeds: int = 3, protocols: Sequence[str] = ("gdumb", "finetune"), epochs_per_task: int = 5,
                  out: Optional[Path] = None, resume: bool = False, device: Union[str, torch.device] = "cpu",
                  progress: bool = True) -> dict:
    """Class-incremental learning on a finished ``ddfad run`` folder (what ``ddfad continual`` runs): three replay
    memories of ``memory`` clips per class (default: the CPC) under each protocol, over ``seeds`` task orders;
    every (protocol, memory, seed) curve saved as it finishes (``resume`` keeps them). Writes report.json,
    report.md and accuracy_per_task.png to ``out`` (default RUN/continual) and returns the report dict."""
    from ..train.evaluate import herding_subset, random_real_subset
    from ..train.experts import load_trajectories
    from ..train.models import build_model
    from .run import finished_run, load_distilled, run_split

    run, preset, cpc = finished_run(run_dir, cpc)
    run_dir = Path(run_dir)
    memory = memory if memory is not None else cpc
    if not 1 <= memory <= cpc:
        raise ParameterError(f"--memory must be in [1, {cpc}] (the distilled set's clips per class), got {memory}")
    protocols = list(protocols)
    if not protocols or set(protocols) - set(PROTOCOLS):
        raise ParameterError(f"--protocols must name some of {PROTOCOLS}, got {','.join(protocols)!r}")
    if seeds < 1:
        raise ParameterError(f"--seeds must be >= 1, got {seeds}")
    out = out or run_dir / "continual"
    results_file = out / RESULTS_NAME
    settings = {"run": str(run_dir), "cpc": cpc, "memory": memory, "tasks": tasks, "seeds": seeds,
                "epochs_per_task": epochs_per_task}
    done = (saved_progress(results_file, settings, resume) or {}).get("curves", {})
    out.mkdir(parents=True, exist_ok=True)

    split = run_split(run_dir, run, preset, device)
    distilled = load_distilled(run_dir / f"cpc{cpc}" / "distilled.pt")
    labels = distilled["labels"]
    keep = torch.cat([torch.nonzero(labels == c).flatten()[:memory] for c in range(split.num_classes)])
    trajectories = load_trajectories(run_dir / "experts", preset.features)
    embed = build_model(preset.expert.model, split.in_shape, split.num_classes)
    memories = {"distilled": (distilled["features"][keep].to(device), labels[keep].to(device)),
                "random": random_real_subset(split.x_train, split.y_train, memory, seed=preset.eval.seed),
                "herding": herding_subset(split.x_train, split.y_train, memory, embed, trajectories.params[0][-1])}
    alpha = distilled["alpha"]
    test = (split.x_test, split.y_test)
    model = preset.expert.model
    task_orders = [task_sequence(split.num_classes, tasks, seed) for seed in range(seeds)]
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
                                     epochs_per_task, seed, split.num_classes)
                done[key] = curve
                atomic_write_json(results_file, {"settings": settings, "curves": done})
                if progress:
                    print(f"{protocol:8s} {name:9s} seed {seed}: " + " ".join(f"{100 * a:.1f}" for a in curve),
                          flush=True)
    results = dict(settings, protocols=protocols, task_sizes=task_sizes,
                   results={p: {m: _summary([done[f"{p}/{m}/{s}"] for s in range(seeds)]) for m in MEMORIES}
                            for p in protocols},
                   distilled_lr=alpha, reported_split="test")
    atomic_write_json(out / "report.json", results)
    atomic_write_text(out / "report.md", _markdown(results))
    _plot(results, out / "accuracy_per_task.png")
    return results
