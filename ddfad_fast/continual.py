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

Both train through the package's one training loop (:func:`ddfad_fast.evaluate.evaluate_training_set` and
:func:`ddfad_fast.experts.train_group`), with the evaluation settings of the run.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .config import EvalConfig, ModelConfig
from .errors import ParameterError
from .evaluate import DEFAULT_LR, evaluate_training_set
from .experts import NetGroup, accuracy, train_group, training_stepper
from .models import build_model

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
