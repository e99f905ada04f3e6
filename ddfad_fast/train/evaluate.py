"""Train-from-scratch evaluation of a training set (distilled, random real subset, or full data).

``config.num_nets`` fresh networks (seeds ``config.seed + i``) are trained with SGD (momentum
``config.momentum``, weight decay ``config.weight_decay``, lr x 0.1 after half the epochs, every batch
augmented with ``config.augment``: the protocol of every row of a report) and tested on the real test
split, and on the validation split when one is given; the result is the mean +- std of their accuracies.
Training sets with soft labels (logits (N, C)) are trained towards the softmax of those logits.
Each net's per-clip results on the test split are kept (``"test_correct"``), so that two training sets can be
compared paired, on the same clips and nets (:mod:`ddfad_fast.apps.stats`).

Baselines of the same size as a distilled set: :func:`random_real_subset` and :func:`herding_subset`
(a coreset: per class, the clips whose running mean embedding best follows the class mean); with
:func:`expert_soft_labels`, the experts' logits on those clips as their labels (the baselines of a distilled set
with learned soft labels); :func:`correct_real_subset`, real clips the experts classify correctly (an initialisation).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import List, Optional

import torch
from torch import Tensor

from .. import pause
from ..config import EvalConfig, ModelConfig, rounding_free
from ..data import data_fingerprint, features_on
from ..errors import FileFormatError, ParameterError
from .sgd import NetGroup, accuracy, correct_mask, report_compile_fallback, train_group, training_stepper
from ..io import load_artifact, save_artifact
from .callbacks import as_callbacks
from .guards import is_finite, require_finite
from .threads import check_resume_threads, saved_threads, thread_record
from .models import FunctionalNet, build_model

DEFAULT_LR = 0.01


def evaluate_training_set(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                          model_config: ModelConfig, config: EvalConfig, lr: Optional[float] = None,
                          progress: bool = False, checkpoint: Optional[Path] = None,
                          checkpoint_every: int = 10, x_val: Optional[Tensor] = None,
                          y_val: Optional[Tensor] = None, callbacks=None) -> dict:
    """Train fresh nets on a training set and test them: the evaluation of distilled sets and baselines.

    The nets train side by side through :func:`~ddfad_fast.train.sgd.train_group` (the loop experts use), net
    ``i`` from seed ``config.seed + i``: ``config.ensemble`` runs each batch's steps as one batched
    computation (equal within float32 rounding), else each net's step in turn (compiled when
    ``config.compile``), bit-identical to training them one after another.

    Parameters
    ----------
    x_train : Tensor or StoredFeatures
        (N, 3, F, T) features.
    y_train : Tensor
        (N,) classes, or (N, C) soft-label logits (the nets train towards their softmax).
    x_test, y_test : Tensor
        The test split.
    model_config : ModelConfig
        The architecture (width, depth) of ``config.models``' nets.
    config : EvalConfig
        Number of nets, epochs or SGD steps, batch, momentum, weight decay, augmentation, seed.
    lr : float, optional
        The step size (e.g. a distilled set's learned alpha); else ``config.lr``; else 0.01.
    progress : bool
        Show a progress bar.
    checkpoint : Path, optional
        A file where the state (the nets' parameters, momentum, RNG, epochs, thread count) is saved
        atomically every ``checkpoint_every`` epochs and on Ctrl-C; when it exists, the evaluation resumes
        from it and gives exactly the result of an uninterrupted run. It is deleted at the end.
    checkpoint_every : int
        Epochs between checkpoints.
    x_val, y_val : Tensor, optional
        A validation split, evaluated too.
    callbacks : Callback or list of Callback, optional
        The stage "evaluate", scope the model's name: each net's training loss per epoch and the result.
        They change no result.

    Returns
    -------
    dict
        ``accs`` (test accuracy of each net, in [0, 1]), ``mean``, ``std``, ``model``, ``lr``, ``epochs``,
        ``test_correct`` (per net, a string of '0'/'1' per test clip, in order) and, with a validation split,
        ``val_accs``, ``val_mean``, ``val_std``.

    Raises
    ------
    ParameterError
        A non-finite or non-positive lr, non-finite training data, fewer than one net, epoch or step.
    """
    lr = float(lr if lr is not None else (config.lr if config.lr is not None else DEFAULT_LR))
    if not (lr > 0 and math.isfinite(lr)):
        raise ParameterError(f"evaluation lr must be finite and > 0, got {lr}")
    if not is_finite(y_train if y_train.is_floating_point() else None,
                     x_train if isinstance(x_train, Tensor) else None):
        raise ParameterError("the training set to evaluate holds NaN or infinite values")
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
    x_train, x_test = features_on(x_train, device), features_on(x_test, device)
    y_train, y_test = y_train.detach().to(device), y_test.to(device)
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        x_val, y_val = features_on(x_val, device), y_val.to(device)
    fingerprint = (x_train, y_train, x_test, y_test) + ((x_val, y_val) if has_val else ())
    state_config = {"eval": rounding_free(config.to_dict()), "model": model_config.to_dict(), "lr": lr,
                    "data": data_fingerprint(*fingerprint)} if checkpoint is not None else None
    state = None
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_artifact(checkpoint, kind="eval_progress", expected_config=state_config,
                              config_keys=("model", "lr", "data"))
        saved_eval = rounding_free(state["config"].get("eval", {}))
        if saved_eval != state_config["eval"]:
            raise FileFormatError(f"{checkpoint}: made with a different config (eval: file {saved_eval!r} vs run "
                                  f"{state_config['eval']!r})")
        check_resume_threads([saved_threads(state)], str(checkpoint))
    accs = list(state["accs"]) if state else []
    val_accs = list(state.get("val_accs", [])) if state else []
    test_correct = list(state.get("test_correct", [])) if state else []
    group = NetGroup.fresh(net, [config.seed + i for i in range(len(accs), config.num_nets)], device)
    if state is not None and "params" in state:
        _restore(group, state, device)
    callbacks = as_callbacks(callbacks)
    callbacks.on_stage_begin("evaluate", {"scope": model_config.name, "model": model_config.name,
                                          "num_nets": config.num_nets, "epochs": epochs, "lr": lr})
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.num_nets * epochs, desc=f"evaluate {model_config.name}", unit="epoch",
                   initial=len(accs) * epochs + sum(group.epochs))

    def save(group_state: dict) -> None:
        save_artifact(checkpoint, "eval_progress", {"accs": accs, "val_accs": val_accs, "test_correct": test_correct,
                                                    **group_state, **thread_record()}, config=state_config)

    def after_epoch(group: NetGroup, rows: List[int], losses: Tensor) -> None:
        report_compile_fallback(stepper, config.compile)
        done = group.epochs[rows[0]]
        require_finite(f"evaluation training of {model_config.name} (epoch {done})", torch.as_tensor(losses),
                       group.params[rows], blame=f"its lr {lr:g} is too large for this set, or the set is damaged",
                       kept=str(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else None)
        if checkpoint is not None and done % checkpoint_every == 0 and min(group.epochs) < epochs:
            save(group.state())
        for j, r in enumerate(rows if callbacks else ()):
            callbacks.on_evaluation_epoch(len(accs) + r, done, {"train_loss": float(losses[j])})
        if bar is not None:
            bar.update(len(rows))
        pause.point("evaluation")

    train_group(net, group, x_train, y_train, epochs,
                lambda epoch: lr * (0.1 if config.lr_decay_at_half and epoch >= epochs // 2 else 1.0),
                config.momentum, config.weight_decay, config.batch_size, config.augment, stepper, config.ensemble,
                after_epoch, on_interrupt=save if checkpoint is not None else None)
    masks = [correct_mask(net, p, x_test, y_test) for p in group.params]
    accs += [int(m.sum()) / len(y_test) for m in masks]
    test_correct += ["".join("1" if v else "0" for v in m.tolist()) for m in masks]
    if has_val:
        val_accs += [accuracy(net, p, x_val, y_val) for p in group.params]
    if bar is not None:
        bar.close()
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    result = {"accs": accs, "mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
              "model": model_config.name, "lr": lr, "epochs": epochs}
    if len(test_correct) == len(accs):           # a state of an earlier release kept no per-clip results
        result["test_correct"] = test_correct
    if has_val:
        result.update(val_accs=val_accs, val_mean=statistics.fmean(val_accs), val_std=statistics.pstdev(val_accs))
    names = {"mean": "test_accuracy", "std": "test_accuracy_std", "val_mean": "val_accuracy", "val_std": "val_accuracy_std",
             "epochs": "epochs", "lr": "lr"}
    callbacks.on_evaluation({names[k]: result[k] for k in names if k in result})
    callbacks.on_stage_end("evaluate", {"scope": model_config.name})
    return result


def _restore(group: NetGroup, state: dict, device: torch.device) -> None:
    """Load a checkpoint's nets into ``group`` (the unfinished nets, first one first). A group state holds
    (R, P) tensors, one generator and epoch count per net (earlier releases' ensemble states one epoch for
    all); an earlier release's one-by-one state holds the first unfinished net part-way."""
    if "generators" in state:
        saved = NetGroup.from_state(dict(state, epochs=state.get("epochs") or [state["epoch"]] * len(state["generators"])),
                                    device)
        if len(saved.generators) != len(group.generators):
            raise FileFormatError(f"the checkpoint holds {len(saved.generators)} unfinished nets, expected "
                                  f"{len(group.generators)}")
        group.params, group.velocity, group.generators, group.epochs = (saved.params, saved.velocity,
                                                                        saved.generators, saved.epochs)
    else:
        group.params[0], group.velocity[0] = state["params"].to(device), state["velocity"].to(device)
        group.generators[0].set_state(state["generator"])
        group.epochs[0] = int(state["epoch"])


@torch.no_grad()
def expert_logits(net: FunctionalNet, params: Tensor, x: Tensor, batch_size: int = 512) -> Tensor:
    """The logits (E, N, C) of ``net`` under each of E experts' flat parameters ``params`` (E, P) (or one
    expert's (P,): E = 1) on the clips ``x`` (N, 3, F, T) (a Tensor or StoredFeatures), in batches of
    ``batch_size`` clips."""
    out = []
    for p in params.view(-1, params.shape[-1]).to(x.device, x.dtype):
        out.append(torch.cat([net.forward(p, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))
    return torch.stack(out).detach()


def expert_soft_labels(net: FunctionalNet, params: Tensor, x: Tensor, y: Optional[Tensor] = None,
                       batch_size: int = 512) -> Tensor:
    """Soft labels for real clips: the logits (N, C) that a distilled set with ``labels="soft"`` starts from
    (evaluation trains towards their softmax).

    ``params`` is one expert's flat parameters (P,) or several experts' (E, P); with classes ``y`` (N,),
    each clip gets the mean logits of the experts that classify it correctly (DATM, Guo et al., ICLR 2024),
    or of all of them when none does; without ``y``, the mean over all experts."""
    logits = expert_logits(net, params, x, batch_size)                                  # (E, N, C)
    if y is None:
        return logits.mean(0)
    right = (logits.argmax(-1) == y.to(logits.device).view(1, -1)).to(logits.dtype)   # (E, N)
    right = torch.where(right.sum(0, keepdim=True) > 0, right, torch.ones_like(right))
    return (logits * right.unsqueeze(-1)).sum(0) / right.sum(0).unsqueeze(-1)


def class_subset_indices(y: Tensor, per_class: int, generator: torch.Generator,
                         score: Optional[Tensor] = None) -> Tensor:
    """Indices of ``per_class`` clips of every class, class by class: per class, a random permutation (drawn
    from ``generator``) of its clips, stably sorted by ``score`` (N,) high to low when one is given; the
    first ``per_class``. ParameterError when a class has fewer clips."""
    if per_class < 1:
        raise ParameterError(f"per_class must be >= 1, got {per_class}")
    y_cpu, idx = y.cpu(), []
    score = None if score is None else score.cpu()
    for c in torch.unique(y_cpu).tolist():
        members = torch.nonzero(y_cpu == c).flatten()
        if len(members) < per_class:
            raise ParameterError(f"class {c} has {len(members)} samples, fewer than per_class={per_class}")
        members = members[torch.randperm(len(members), generator=generator)]
        if score is not None:
            members = members[torch.sort(score[members], descending=True, stable=True).indices]
        idx.append(members[:per_class])
    return torch.cat(idx).to(y.device)


def correct_real_subset(x: Tensor, y: Tensor, per_class: int, net: FunctionalNet, params: Tensor,
                        seed=0, batch_size: int = 512) -> tuple:
    """Per class, ``per_class`` real clips that the experts classify correctly (DATM's initialisation).

    Clips are ranked by how many of the experts ``params`` (E, P) classify them correctly and drawn at random
    among equals (``seed``: an int or a torch.Generator): clips every expert gets right first, then, where a
    class has too few of those, clips fewer experts get right.

    Returns
    -------
    (Tensor, Tensor)
        x (C * per_class, ...) and y (C * per_class,), class by class.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    y_on = y.to(x.device)
    votes = sum(correct_mask(net, p, x, y_on, batch_size).to(torch.int64)
                for p in params.view(-1, params.shape[-1]).to(x.device, x.dtype))
    idx = class_subset_indices(y, per_class, gen, votes)
    return x[idx], y[idx]


def random_real_subset(x: Tensor, y: Tensor, per_class: int, seed: int = 0) -> tuple:
    """A seeded random subset of every class: the random-real baseline.

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, ...) features.
    y : Tensor
        (N,) classes.
    per_class : int
        Clips per class.
    seed : int
        Seed of the draw.

    Returns
    -------
    (Tensor, Tensor)
        x (C * per_class, ...) and y (C * per_class,).
    """
    idx = class_subset_indices(y, per_class, torch.Generator().manual_seed(seed))
    return x[idx], y[idx]


@torch.no_grad()
def herding_subset(x: Tensor, y: Tensor, per_class: int, net: FunctionalNet, params: Tensor,
                   batch_size: int = 512) -> tuple:
    """A herding coreset of every class: the coreset baseline.

    Clips are embedded by ``net`` under ``params`` (e.g. a trained expert's last snapshot); per class, each
    step adds the clip that brings the mean embedding of the chosen clips closest to the class mean
    (Welling 2009, as in iCaRL). Deterministic.

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, ...) features.
    y : Tensor
        (N,) classes.
    per_class : int
        Clips per class.
    net : FunctionalNet
        The embedding net.
    params : Tensor
        (P,) its flat parameters.
    batch_size : int
        Clips per embedding batch.

    Returns
    -------
    (Tensor, Tensor)
        x (C * per_class, ...) and y (C * per_class,).
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
