"""Train-from-scratch evaluation of a training set (distilled, random real subset, or full data).

``config.num_nets`` fresh networks (seeds ``config.seed + i``) are trained with SGD (momentum
``config.momentum``, weight decay ``config.weight_decay``, lr x 0.1 after half the epochs) and tested
on the real test split; the result is the mean +- std of their test accuracies.
"""
from __future__ import annotations

import statistics
from typing import Optional

import torch
from torch import Tensor

from .config import EvalConfig, ModelConfig
from .errors import ParameterError
from .experts import accuracy, sgd_epoch
from .models import build_model

DEFAULT_LR = 0.01


def evaluate_training_set(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                          model_config: ModelConfig, config: EvalConfig, lr: Optional[float] = None,
                          progress: bool = False) -> dict:
    """Train ``config.num_nets`` nets on (x_train (N, 3, F, T), y_train (N,)), test on (x_test, y_test).

    ``lr``: the step size (e.g. a distilled set's learned alpha); else ``config.lr``; else 0.01.
    Returns ``{"accs": [...], "mean", "std", "model", "lr"}`` (accuracies as fractions in [0, 1]).
    """
    lr = float(lr if lr is not None else (config.lr if config.lr is not None else DEFAULT_LR))
    if not lr > 0:
        raise ParameterError(f"evaluation lr must be > 0, got {lr}")
    if config.num_nets < 1 or config.epochs < 1:
        raise ParameterError(f"num_nets and epochs must be >= 1, got {config.num_nets}, {config.epochs}")
    if len(y_train) == 0 or len(y_test) == 0:
        raise ParameterError(f"need non-empty train and test sets, got {len(y_train)} and {len(y_test)} samples")
    num_classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    net = build_model(model_config, tuple(x_train.shape[1:]), num_classes)
    x_train, x_test = x_train.detach().float(), x_test.detach().float()
    accs = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.num_nets * config.epochs, desc=f"evaluate {model_config.name}", unit="epoch")
    for i in range(config.num_nets):
        gen = torch.Generator().manual_seed(config.seed + i)
        params = net.init_params(gen)
        velocity = torch.zeros_like(params)
        for epoch in range(config.epochs):
            step = lr * (0.1 if config.lr_decay_at_half and epoch >= config.epochs // 2 else 1.0)
            sgd_epoch(net, params, velocity, x_train, y_train, step, config.momentum, config.weight_decay,
                      config.batch_size, gen)
            if bar is not None:
                bar.update(1)
        accs.append(accuracy(net, params, x_test, y_test))
    if bar is not None:
        bar.close()
    return {"accs": accs, "mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
            "model": model_config.name, "lr": lr}


def random_real_subset(x: Tensor, y: Tensor, per_class: int, seed: int = 0) -> tuple:
    """A seeded random subset of ``per_class`` samples of every class: (x (C*per_class, ...), y)."""
    if per_class < 1:
        raise ParameterError(f"per_class must be >= 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    idx = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        if len(members) < per_class:
            raise ParameterError(f"class {c} has {len(members)} samples, fewer than per_class={per_class}")
        idx.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    idx = torch.cat(idx)
    return x[idx], y[idx]
