"""Expert (teacher) training for MTT: one trajectory file of flat parameter snapshots per expert.

Expert ``k`` is seeded with ``config.seed + k`` (initialisation and batch order), trained with SGD
(``config.lr``, ``config.momentum``, ``config.weight_decay``; MTT uses 0.01 / 0 / 0) on batches of
``config.batch_size``, and its flat parameters (P,) are snapshotted at initialisation and after every
epoch: ``params`` (epochs + 1, P) float32. With ``config.augment`` every batch is augmented (the same
family as the distillation unroll and evaluation). Each file carries the feature standardisation the
expert was trained in (``split.norm``), so later stages never look for it elsewhere. Accuracy per
epoch is tracked on the validation split when there is one (else on test; it chooses nothing).
Finished experts are skipped on resume; an unfinished one is checkpointed atomically after every epoch
(``expert_{k:03d}.partial.pt``) and resumed exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .config import Augment, ExpertConfig, FeatureConfig
from .backends import _warn_once
from .data import FeatureNorm
from .errors import FileFormatError, ParameterError
from .io import load_artifact, save_artifact
from .models import FunctionalNet, build_model
from .unroll import AugTensors, Stepper, augment_tensors, functional_grad_and_loss


@dataclass
class Trajectories:
    """Expert trajectories: ``params`` is one (epochs + 1, P) float32 tensor per expert; ``norm`` the
    standardisation of the features they were trained on (None: raw features)."""

    params: List[Tensor]
    expert_config: ExpertConfig
    in_shape: Tuple[int, int, int]
    num_classes: int
    feature_config: FeatureConfig
    norm: Optional[FeatureNorm] = None


def expert_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"expert_{k:03d}.pt"


def _partial_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"expert_{k:03d}.partial.pt"


@torch.no_grad()
def accuracy(net: FunctionalNet, params: Tensor, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Fraction of ``x`` (N, 3, F, T) classified as ``y`` (N,) by ``net`` under ``params`` (P,)."""
    if len(y) == 0:
        return float("nan")
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((net.forward(params, x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def augment_draws(augment: Optional[Augment], generator: torch.Generator, batch: int, n_freq: int, n_time: int,
                  dtype: torch.dtype, device: torch.device) -> AugTensors:
    """The augmentation of one training batch, seeded from ``generator`` (None when ``augment`` is None)."""
    if augment is None:
        return None
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return augment_tensors(augment, seed, batch, n_freq, n_time, dtype, device)


_STEPPERS: Dict[tuple, Stepper] = {}


def training_stepper(net: FunctionalNet, compile: bool) -> Stepper:
    """The (cached) :class:`Stepper` whose ``grad_and_loss`` trains ``net``: one per architecture, input
    shape, class count and compile setting, so a run compiles each training graph once per batch shape."""
    key = (net.config, net.in_shape, net.num_classes, bool(compile))
    if key not in _STEPPERS:
        _STEPPERS[key] = Stepper(net, compile=compile)
    return _STEPPERS[key]


def report_compile_fallback(stepper: Stepper, requested: bool) -> None:
    """Warn once (BackendFallbackWarning) when a requested compiled training step runs eager, and why."""
    if requested and not stepper.compiled:
        _warn_once("training step", "torch.compile", stepper.compile_error or "compilation failed", "eager")


@torch.no_grad()
def _sgd_update(params: Tensor, velocity: Tensor, grad: Tensor, lr: float, momentum: float,
                weight_decay: float) -> None:
    """SGD with momentum and weight decay (torch.optim.SGD's rule), in place."""
    if weight_decay:
        grad = grad + weight_decay * params
    if momentum:
        velocity.mul_(momentum).add_(grad)
        grad = velocity
    params.sub_(lr * grad)


def sgd_epoch(net: FunctionalNet, params: Tensor, velocity: Tensor, x: Tensor, y: Tensor, lr: float,
              momentum: float, weight_decay: float, batch_size: int, generator: torch.Generator,
              augment: Optional[Augment] = None, stepper: Optional[Stepper] = None) -> float:
    """One epoch of SGD on a shuffled order drawn from ``generator``; updates ``params``/``velocity`` in place.

    ``y``: class indices (N,) or soft-label logits (N, C) (the target is their softmax). ``augment``:
    every batch is augmented with draws from ``generator``. ``x``, ``y`` and ``params`` share a device;
    ``generator`` is a CPU generator (the same draws on every device). ``stepper``: computes each batch's
    gradient (e.g. compiled, :func:`training_stepper`); default eager. Returns the epoch's mean loss.
    """
    stepper = stepper or training_stepper(net, compile=False)
    perm = torch.randperm(len(y), generator=generator)
    total, count = 0.0, 0
    for i in range(0, len(y), batch_size):
        idx = perm[i:i + batch_size].to(x.device)
        xb = x[idx]
        aug = augment_draws(augment, generator, xb.shape[0], xb.shape[2], xb.shape[3], xb.dtype, xb.device)
        grad, loss = stepper.grad_and_loss(params.detach(), xb, y[idx], aug)
        _sgd_update(params, velocity, grad, lr, momentum, weight_decay)
        total += float(loss) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def sgd_epoch_ensemble(net: FunctionalNet, params: Tensor, velocity: Tensor, x: Tensor, y: Tensor, lr: float,
                       momentum: float, weight_decay: float, batch_size: int, generators: List[torch.Generator],
                       augment: Optional[Augment] = None) -> Tensor:
    """:func:`sgd_epoch` for R nets at once: ``params``/``velocity`` (R, P), one generator per net.

    Net ``r`` draws its order and augmentation from ``generators[r]`` exactly as :func:`sgd_epoch` would,
    so it ends where training it alone ends, within float32 rounding; the R forward/backward passes run
    as one batched computation (``torch.func.vmap``: grouped convolutions). Returns the R mean losses.
    """
    if params.dim() != 2 or params.shape != velocity.shape or params.shape[0] != len(generators):
        raise ParameterError(f"params and velocity must be (R, P) with R = {len(generators)} generators, got "
                             f"{tuple(params.shape)} and {tuple(velocity.shape)}")
    perms = [torch.randperm(len(y), generator=gen) for gen in generators]
    step = torch.func.vmap(functional_grad_and_loss(net))
    total = torch.zeros(len(generators), dtype=torch.float64)
    for i in range(0, len(y), batch_size):
        idx = torch.stack([perm[i:i + batch_size] for perm in perms]).to(x.device)      # (R, b)
        xb, yb = x[idx], y[idx]
        draws = [augment_draws(augment, gen, idx.shape[1], x.shape[2], x.shape[3], x.dtype, x.device)
                 for gen in generators]
        args = (params.detach(), xb, yb)
        if augment is not None:
            args += (torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws]))
        grad, loss = step(*args)
        _sgd_update(params, velocity, grad, lr, momentum, weight_decay)
        total += loss.detach().double().cpu() * idx.shape[1]
    return total / max(len(y), 1)


def _file_config(split, config: ExpertConfig) -> dict:
    return {"features": split.feature_config.to_dict(), "expert": config.to_dict(),
            "in_shape": list(split.in_shape), "num_classes": split.num_classes,
            "standardized": split.norm is not None}


def _check_same(path: Path, kind: str, file_config: dict) -> dict:
    """Load ``path`` and check it was made with ``file_config`` (the expert count may differ)."""
    obj = load_artifact(path, kind=kind, expected_config=file_config,
                        config_keys=("features", "in_shape", "num_classes", "standardized"))
    saved = dict(obj["config"].get("expert", {}), num_experts=None, compile=None)
    if saved != dict(file_config["expert"], num_experts=None, compile=None):
        raise FileFormatError(f"{path}: made with a different expert config ({obj['config'].get('expert')} "
                              f"vs {file_config['expert']})")
    return obj


def _validate(config: ExpertConfig, split) -> None:
    if config.num_experts < 1 or config.epochs < 1:
        raise ParameterError(f"num_experts and epochs must be >= 1, got {config.num_experts}, {config.epochs}")
    if config.lr <= 0 or config.batch_size < 1:
        raise ParameterError(f"expert lr must be > 0 and batch_size >= 1, got {config.lr}, {config.batch_size}")
    if len(split.y_train) == 0:
        raise ParameterError("the training split is empty")


def train_experts(split, config: ExpertConfig, out_dir: Path, resume: bool = False,
                  progress: bool = True) -> List[Path]:
    """Train ``config.num_experts`` experts on ``split`` (a FeatureSplit); one trajectory file each.

    Returns the paths ``out_dir/expert_{k:03d}.pt``. Without ``resume`` an existing expert file is an
    error (ParameterError naming it); with ``resume`` finished experts of the same config are kept and
    an unfinished one continues from its last epoch.
    """
    _validate(config, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    file_config = _file_config(split, config)
    net = build_model(config.model, split.in_shape, split.num_classes)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.num_experts * config.epochs, desc="experts", unit="epoch")
    paths = []
    for k in range(config.num_experts):
        path = expert_path(out_dir, k)
        if path.exists():
            if not resume:
                raise ParameterError(f"{path} exists; pass resume=True (--resume) to keep it or use another folder")
            _check_same(path, "trajectory", file_config)
            paths.append(path)
            if bar is not None:
                bar.update(config.epochs)
            continue
        _train_one(net, split, config, k, out_dir, file_config, resume, bar)
        paths.append(path)
    if bar is not None:
        bar.close()
    return paths


def _train_one(net: FunctionalNet, split, config: ExpertConfig, k: int, out_dir: Path, file_config: dict,
               resume: bool, bar) -> None:
    partial = _partial_path(out_dir, k)
    gen = torch.Generator().manual_seed(config.seed + k)
    device = split.x_train.device
    monitor, x_mon, y_mon = split.monitor_set()
    stepper = training_stepper(net, config.compile)
    if resume and partial.exists():
        state = _check_same(partial, "expert_progress", file_config)
        snapshots = [t.to(device) for t in state["snapshots"]]
        params, velocity = state["params"].to(device).clone(), state["velocity"].to(device).clone()
        gen.set_state(state["generator"])
        train_loss, monitor_acc = list(state["train_loss"]), list(state["monitor_acc"])
        if bar is not None:
            bar.update(len(snapshots) - 1)
    else:
        params = net.init_params(gen).to(device)
        velocity = torch.zeros_like(params)
        snapshots, train_loss, monitor_acc = [params.clone()], [], []
    for epoch in range(len(snapshots), config.epochs + 1):
        loss = sgd_epoch(net, params, velocity, split.x_train, split.y_train, config.lr, config.momentum,
                         config.weight_decay, config.batch_size, gen, config.augment, stepper)
        report_compile_fallback(stepper, config.compile)
        snapshots.append(params.clone())
        train_loss.append(loss)
        monitor_acc.append(accuracy(net, params, x_mon, y_mon))
        if epoch < config.epochs:
            save_artifact(partial, "expert_progress",
                          {"snapshots": torch.stack(snapshots).cpu(), "params": params.cpu(),
                           "velocity": velocity.cpu(), "generator": gen.get_state(), "train_loss": train_loss,
                           "monitor_acc": monitor_acc}, config=file_config)
        if bar is not None:
            bar.set_postfix(expert=k, epoch=epoch, loss=f"{loss:.3f}", **{f"{monitor}_acc": f"{monitor_acc[-1]:.3f}"})
            bar.update(1)
    payload = {"params": torch.stack(snapshots).float().cpu(), "seed": config.seed + k, "train_loss": train_loss,
               "monitor_acc": monitor_acc, "monitor_split": monitor}
    if split.norm is not None:
        payload.update(split.norm.to_payload())
    save_artifact(expert_path(out_dir, k), "trajectory", payload, config=file_config)
    partial.unlink(missing_ok=True)


def load_trajectories(out_dir: Path, feature_config: Optional[FeatureConfig] = None) -> Trajectories:
    """All ``expert_*.pt`` trajectories of ``out_dir``; they must share one config (but the expert count).

    ``expert_config.num_experts`` of the result is the number of files found.

    Raises FileFormatError if there are none, if they disagree, or if ``feature_config`` is given and
    differs from the one they were trained with.
    """
    out_dir = Path(out_dir)
    files = sorted(p for p in out_dir.glob("expert_*.pt") if not p.name.endswith(".partial.pt"))
    if not files:
        raise FileFormatError(f"{out_dir}: no expert_*.pt trajectory files")
    expected = {"features": feature_config.to_dict()} if feature_config is not None else None
    first = load_artifact(files[0], kind="trajectory", expected_config=expected)
    ref = first["config"]
    norm = FeatureNorm.from_payload(first, str(files[0])) if ref.get("standardized") else None
    params = [first["params"]]
    for f in files[1:]:
        obj = _check_same(f, "trajectory", ref)
        if norm is not None and not (torch.equal(obj["norm_mean"], norm.mean) and torch.equal(obj["norm_std"], norm.std)):
            raise FileFormatError(f"{f}: trained on features standardised differently from {files[0]}")
        params.append(obj["params"])
    expert_config = ExpertConfig.from_dict(ref["expert"]).replace(num_experts=len(files))
    return Trajectories(params, expert_config, tuple(ref["in_shape"]), int(ref["num_classes"]),
                        FeatureConfig.from_dict(ref["features"]), norm)
