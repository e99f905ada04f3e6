"""Train-from-scratch evaluation of a training set (distilled, random real subset, or full data).

``config.num_nets`` fresh networks (seeds ``config.seed + i``) are trained with SGD (momentum
``config.momentum``, weight decay ``config.weight_decay``, lr x 0.1 after half the epochs) and tested
on the real test split; the result is the mean +- std of their test accuracies.
"""
from __future__ import annotations

import hashlib
import statistics
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from .config import EvalConfig, ModelConfig
from .errors import ParameterError
from .experts import accuracy, sgd_epoch
from .io import load_artifact, save_artifact
from .models import build_model

DEFAULT_LR = 0.01


def data_fingerprint(*tensors: Tensor) -> str:
    """A short hash of tensors' shapes, dtypes and bytes (to refuse a checkpoint made on other data)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:32]


def evaluate_training_set(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                          model_config: ModelConfig, config: EvalConfig, lr: Optional[float] = None,
                          progress: bool = False, checkpoint: Optional[Path] = None,
                          checkpoint_every: int = 10) -> dict:
    """Train ``config.num_nets`` nets on (x_train (N, 3, F, T), y_train (N,)), test on (x_test, y_test).

    ``lr``: the step size (e.g. a distilled set's learned alpha); else ``config.lr``; else 0.01.
    ``checkpoint``: a file where the state (finished accuracies, the current net's parameters, momentum
    and RNG) is saved atomically every ``checkpoint_every`` epochs and on Ctrl-C; when it exists, the
    evaluation resumes from it and gives exactly the result of an uninterrupted run. It is deleted at
    the end. Returns ``{"accs": [...], "mean", "std", "model", "lr"}`` (accuracies in [0, 1]).
    """
    lr = float(lr if lr is not None else (config.lr if config.lr is not None else DEFAULT_LR))
    if not lr > 0:
        raise ParameterError(f"evaluation lr must be > 0, got {lr}")
    if config.num_nets < 1 or config.epochs < 1:
        raise ParameterError(f"num_nets and epochs must be >= 1, got {config.num_nets}, {config.epochs}")
    if len(y_train) == 0 or len(y_test) == 0:
        raise ParameterError(f"need non-empty train and test sets, got {len(y_train)} and {len(y_test)} samples")
    if checkpoint_every < 1:
        raise ParameterError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    num_classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    net = build_model(model_config, tuple(x_train.shape[1:]), num_classes)
    x_train, x_test = x_train.detach().float(), x_test.detach().float()
    state_config = {"eval": config.to_dict(), "model": model_config.to_dict(), "lr": lr,
                    "data": data_fingerprint(x_train, y_train, x_test, y_test)} if checkpoint is not None else None
    state = None
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_artifact(checkpoint, kind="eval_progress", expected_config=state_config)
    accs = list(state["accs"]) if state else []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.num_nets * config.epochs, desc=f"evaluate {model_config.name}", unit="epoch",
                   initial=len(accs) * config.epochs + (int(state["epoch"]) if state else 0))
    for i in range(len(accs), config.num_nets):
        gen = torch.Generator().manual_seed(config.seed + i)
        params = net.init_params(gen)
        velocity, first_epoch = torch.zeros_like(params), 0
        if state is not None and "params" in state:          # resume inside net i
            params, velocity, first_epoch = state["params"].clone(), state["velocity"].clone(), int(state["epoch"])
            gen.set_state(state["generator"])
        state = None

        def save(epoch: int, saved_params: Tensor, saved_velocity: Tensor, generator_state: Tensor) -> None:
            save_artifact(checkpoint, "eval_progress",
                          {"accs": accs, "epoch": epoch, "params": saved_params, "velocity": saved_velocity,
                           "generator": generator_state}, config=state_config)

        epoch_start = None
        try:
            for epoch in range(first_epoch, config.epochs):
                if checkpoint is not None:   # the state at this epoch boundary, for a clean Ctrl-C
                    epoch_start = (epoch, params.clone(), velocity.clone(), gen.get_state())
                step = lr * (0.1 if config.lr_decay_at_half and epoch >= config.epochs // 2 else 1.0)
                sgd_epoch(net, params, velocity, x_train, y_train, step, config.momentum, config.weight_decay,
                          config.batch_size, gen)
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < config.epochs:
                    save(epoch + 1, params, velocity, gen.get_state())
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            if epoch_start is not None:
                save(*epoch_start)   # the interrupted epoch is redone on resume
            raise
        accs.append(accuracy(net, params, x_test, y_test))
        if checkpoint is not None and i + 1 < config.num_nets:   # the next net starts from its seed
            save_artifact(checkpoint, "eval_progress", {"accs": accs, "epoch": 0}, config=state_config)
    if bar is not None:
        bar.close()
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
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
