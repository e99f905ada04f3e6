"""Train-from-scratch evaluation of a training set (distilled, random real subset, or full data).

``config.num_nets`` fresh networks (seeds ``config.seed + i``) are trained with SGD (momentum
``config.momentum``, weight decay ``config.weight_decay``, lr x 0.1 after half the epochs, every batch
augmented with ``config.augment``: the protocol of every row of a report) and tested on the real test
split, and on the validation split when one is given; the result is the mean +- std of their accuracies.
Training sets with soft labels (logits (N, C)) are trained towards the softmax of those logits.

Baselines of the same size as a distilled set: :func:`random_real_subset` and :func:`herding_subset`
(a coreset: per class, the clips whose running mean embedding best follows the class mean).
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
from .experts import accuracy, report_compile_fallback, sgd_epoch, sgd_epoch_ensemble, training_stepper
from .io import load_artifact, save_artifact
from .models import FunctionalNet, build_model

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
                          checkpoint_every: int = 10, x_val: Optional[Tensor] = None,
                          y_val: Optional[Tensor] = None) -> dict:
    """Train ``config.num_nets`` nets on (x_train (N, 3, F, T), y_train (N,) or soft-label logits (N, C)),
    test on (x_test, y_test) and, when given, on the validation split (x_val, y_val).

    ``lr``: the step size (e.g. a distilled set's learned alpha); else ``config.lr``; else 0.01.
    ``checkpoint``: a file where the state (finished accuracies, the current net's parameters, momentum
    and RNG) is saved atomically every ``checkpoint_every`` epochs and on Ctrl-C; when it exists, the
    evaluation resumes from it and gives exactly the result of an uninterrupted run. It is deleted at
    the end. ``config.ensemble``: the nets train together as one batched computation (same seeds, same
    results within float32 rounding; see :func:`~ddfad_fast.experts.sgd_epoch_ensemble`); else one after
    another, each step compiled when ``config.compile``. Returns ``{"accs": [...], "mean", "std", "model",
    "lr"}`` (test accuracies in [0, 1]) plus ``"val_accs", "val_mean", "val_std"`` with a validation split.
    """
    lr = float(lr if lr is not None else (config.lr if config.lr is not None else DEFAULT_LR))
    if not lr > 0:
        raise ParameterError(f"evaluation lr must be > 0, got {lr}")
    if config.num_nets < 1 or config.epochs < 1 or (config.steps is not None and config.steps < 1):
        raise ParameterError(f"num_nets, epochs and steps must be >= 1, got {config.num_nets}, {config.epochs}, "
                             f"{config.steps}")
    if len(y_train) == 0 or len(y_test) == 0:
        raise ParameterError(f"need non-empty train and test sets, got {len(y_train)} and {len(y_test)} samples")
    if checkpoint_every < 1:
        raise ParameterError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    epochs = config.epochs_for(len(y_train))
    soft = y_train.is_floating_point()
    num_classes = int(y_train.shape[1]) if soft else int(max(int(y_train.max()), int(y_test.max())) + 1)
    net = build_model(model_config, tuple(x_train.shape[1:]), num_classes)
    stepper = training_stepper(net, config.compile)
    device = x_train.device
    x_train, x_test = x_train.detach().float(), x_test.detach().float().to(device)
    y_train, y_test = y_train.detach().to(device), y_test.to(device)
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        x_val, y_val = x_val.detach().float().to(device), y_val.to(device)
    fingerprint = (x_train, y_train, x_test, y_test) + ((x_val, y_val) if has_val else ())
    state_config = {"eval": dict(config.to_dict(), compile=None),         # compiling changes rounding only
                    "model": model_config.to_dict(), "lr": lr,
                    "data": data_fingerprint(*fingerprint)} if checkpoint is not None else None
    state = None
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_artifact(checkpoint, kind="eval_progress", expected_config=state_config)
    accs = list(state["accs"]) if state else []
    val_accs = list(state.get("val_accs", [])) if state else []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.num_nets * epochs, desc=f"evaluate {model_config.name}", unit="epoch",
                   initial=len(accs) * epochs + (int(state["epoch"]) * (config.num_nets - len(accs) if config.ensemble
                                                                         else 1) if state else 0))
    if config.ensemble and len(accs) < config.num_nets:
        params = _train_ensemble(net, x_train, y_train, config, lr, epochs, len(accs), state, checkpoint,
                                 checkpoint_every, state_config, bar)
        accs += [accuracy(net, p, x_test, y_test) for p in params]
        if has_val:
            val_accs += [accuracy(net, p, x_val, y_val) for p in params]
    for i in range(len(accs), config.num_nets):
        gen = torch.Generator().manual_seed(config.seed + i)
        params = net.init_params(gen).to(device)
        velocity, first_epoch = torch.zeros_like(params), 0
        if state is not None and "params" in state:          # resume inside net i
            params, velocity = state["params"].to(device).clone(), state["velocity"].to(device).clone()
            first_epoch = int(state["epoch"])
            gen.set_state(state["generator"])
        state = None

        def save(epoch: int, saved_params: Tensor, saved_velocity: Tensor, generator_state: Tensor) -> None:
            save_artifact(checkpoint, "eval_progress",
                          {"accs": accs, "val_accs": val_accs, "epoch": epoch, "params": saved_params.cpu(),
                           "velocity": saved_velocity.cpu(), "generator": generator_state}, config=state_config)

        epoch_start = None
        try:
            for epoch in range(first_epoch, epochs):
                if checkpoint is not None:   # the state at this epoch boundary, for a clean Ctrl-C
                    epoch_start = (epoch, params.clone(), velocity.clone(), gen.get_state())
                step = lr * (0.1 if config.lr_decay_at_half and epoch >= epochs // 2 else 1.0)
                sgd_epoch(net, params, velocity, x_train, y_train, step, config.momentum, config.weight_decay,
                          config.batch_size, gen, config.augment, stepper)
                report_compile_fallback(stepper, config.compile)
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
                    save(epoch + 1, params, velocity, gen.get_state())
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            if epoch_start is not None:
                save(*epoch_start)   # the interrupted epoch is redone on resume
            raise
        accs.append(accuracy(net, params, x_test, y_test))
        if has_val:
            val_accs.append(accuracy(net, params, x_val, y_val))
        if checkpoint is not None and i + 1 < config.num_nets:   # the next net starts from its seed
            save_artifact(checkpoint, "eval_progress", {"accs": accs, "val_accs": val_accs, "epoch": 0},
                          config=state_config)
    if bar is not None:
        bar.close()
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    result = {"accs": accs, "mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
              "model": model_config.name, "lr": lr, "epochs": epochs}
    if has_val:
        result.update(val_accs=val_accs, val_mean=statistics.fmean(val_accs), val_std=statistics.pstdev(val_accs))
    return result


def _train_ensemble(net: FunctionalNet, x_train: Tensor, y_train: Tensor, config: EvalConfig, lr: float,
                    epochs: int, first: int, state: Optional[dict], checkpoint: Optional[Path], checkpoint_every: int,
                    state_config: Optional[dict], bar) -> Tensor:
    """Nets ``first`` .. ``num_nets - 1`` trained together (:func:`sgd_epoch_ensemble`); their parameters (R, P).

    Each net keeps its own seed (``config.seed + i``), so it ends where training it alone would, within
    float32 rounding. ``state``: an ensemble checkpoint to resume from (same epoch boundary semantics as
    the one-by-one path: the interrupted epoch is redone).
    """
    device = x_train.device
    seeds = range(config.seed + first, config.seed + config.num_nets)
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    params = torch.stack([net.init_params(gen) for gen in gens]).to(device)
    velocity, first_epoch = torch.zeros_like(params), 0
    if state is not None and "params" in state:
        params, velocity = state["params"].to(device).clone(), state["velocity"].to(device).clone()
        first_epoch = int(state["epoch"])
        for gen, gen_state in zip(gens, state["generators"]):
            gen.set_state(gen_state)

    def save(epoch: int, saved_params: Tensor, saved_velocity: Tensor, generator_states: list) -> None:
        save_artifact(checkpoint, "eval_progress",
                      {"accs": [], "val_accs": [], "epoch": epoch, "params": saved_params.cpu(),
                       "velocity": saved_velocity.cpu(), "generators": generator_states}, config=state_config)

    epoch_start = None
    try:
        for epoch in range(first_epoch, epochs):
            if checkpoint is not None:
                epoch_start = (epoch, params.clone(), velocity.clone(), [g.get_state() for g in gens])
            step = lr * (0.1 if config.lr_decay_at_half and epoch >= epochs // 2 else 1.0)
            sgd_epoch_ensemble(net, params, velocity, x_train, y_train, step, config.momentum, config.weight_decay,
                               config.batch_size, gens, config.augment)
            if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
                save(epoch + 1, params, velocity, [g.get_state() for g in gens])
            if bar is not None:
                bar.update(len(gens))
    except KeyboardInterrupt:
        if epoch_start is not None:
            save(*epoch_start)
        raise
    return params


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


@torch.no_grad()
def herding_subset(x: Tensor, y: Tensor, per_class: int, net: FunctionalNet, params: Tensor,
                   batch_size: int = 512) -> tuple:
    """A herding coreset of ``per_class`` clips of every class: (x (C*per_class, ...), y).

    Clips are embedded by ``net`` under ``params`` (e.g. a trained expert's last snapshot); per class, each
    step adds the clip that brings the mean embedding of the chosen clips closest to the class mean
    (Welling 2009, as in iCaRL). Deterministic.
    """
    if per_class < 1:
        raise ParameterError(f"per_class must be >= 1, got {per_class}")
    params = params.to(x.device, x.dtype)
    emb = torch.cat([net.embed(params, x[i:i + batch_size]) for i in range(0, len(y), batch_size)]).double()
    emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
    idx = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        if len(members) < per_class:
            raise ParameterError(f"class {c} has {len(members)} samples, fewer than per_class={per_class}")
        e = emb[members]
        target, total = e.mean(0), torch.zeros_like(e[0])
        free = torch.ones(len(members), dtype=torch.bool, device=e.device)
        for k in range(per_class):
            dist = ((target - (total + e) / (k + 1)) ** 2).sum(1)
            dist[~free] = float("inf")
            j = int(dist.argmin())
            free[j] = False
            total = total + e[j]
            idx.append(int(members[j]))
    idx = torch.tensor(idx, dtype=torch.int64, device=x.device)
    return x[idx], y[idx]
