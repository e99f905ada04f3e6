"""Expert (teacher) training for MTT: one trajectory file of flat parameter snapshots per expert.

Expert ``k`` is seeded with ``config.seed + k`` (initialisation and batch order), trained with SGD
(``config.lr``, ``config.momentum``, ``config.weight_decay``; MTT uses 0.01 / 0 / 0) on batches of
``config.batch_size``, and its flat parameters (P,) are snapshotted at initialisation and after every
epoch: ``params`` (epochs + 1, P) float32. With ``config.augment`` every batch is augmented (the same
family as the distillation unroll and evaluation). Each file carries the feature standardisation the
expert was trained in (``split.norm``), so later stages never look for it elsewhere. Accuracy per
epoch is tracked on the validation split when there is one (else on test; it chooses nothing).
Finished experts are skipped on resume; an unfinished one is checkpointed atomically after every epoch
(``expert_{k:03d}.partial.pt``) and resumed exactly. Under torchrun the ranks train disjoint experts
into one folder (:func:`train_experts`); the files are the ones a single process writes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import distributed, pause
from ..config import Augment, ExpertConfig, FeatureConfig, rounding_free
from ..ops.dispatch import warn_fallback
from ..data import FeatureNorm
from ..errors import DDFADError, FileFormatError, ParameterError
from ..io import load_artifact, save_artifact
from .guards import require_finite
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
        warn_fallback("training step", "torch.compile", stepper.compile_error or "compilation failed", "eager")


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
              momentum: float, weight_decay: float, batch_size: int,
              generator: Union[torch.Generator, Sequence[torch.Generator]], augment: Optional[Augment] = None,
              stepper: Optional[Stepper] = None, together: bool = False) -> Union[float, Tensor]:
    """One epoch of SGD, for one net or R nets side by side; updates ``params``/``velocity`` in place.

    One net: ``params``/``velocity`` (P,) and one ``generator``; returns the epoch's mean loss (float).
    R nets: (R, P) and R generators; returns the R mean losses ((R,) float64). Net ``r`` draws its batch
    order and augmentation from its own generator (CPU, the same draws on every device), so it ends
    exactly where training it alone ends. ``together``: the R steps of a batch run as one batched
    computation (``torch.func.vmap``, grouped convolutions; equal within float32 rounding); else each
    net's step in turn, through ``stepper`` (e.g. compiled, :func:`training_stepper`; default eager),
    bit-identical to training the nets one after another.
    ``y``: class indices (N,) or soft-label logits (N, C) (the target is their softmax).
    """
    single = params.dim() == 1
    gens = [generator] if single else list(generator)
    group_params, group_velocity = (params[None], velocity[None]) if single else (params, velocity)
    if group_params.dim() != 2 or group_params.shape != group_velocity.shape or len(group_params) != len(gens):
        raise ParameterError(f"params and velocity must be (P,) with one generator or (R, P) with R generators, "
                             f"got {tuple(params.shape)}, {tuple(velocity.shape)} and {len(gens)} generator(s)")
    stepper = stepper or training_stepper(net, compile=False)
    batched = torch.func.vmap(functional_grad_and_loss(net)) if together else None
    perms = [torch.randperm(len(y), generator=gen) for gen in gens]
    totals = [0.0] * len(gens)
    for i in range(0, len(y), batch_size):
        idx = torch.stack([perm[i:i + batch_size] for perm in perms]).to(x.device)      # (R, b)
        b = idx.shape[1]
        draws = [augment_draws(augment, gen, b, x.shape[2], x.shape[3], x.dtype, x.device) for gen in gens]
        if batched is not None:
            args = (group_params.detach(), x[idx], y[idx])
            if augment is not None:
                args += (torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws]))
            grad, loss = batched(*args)
            _sgd_update(group_params, group_velocity, grad, lr, momentum, weight_decay)
            totals = [t + float(v) * b for t, v in zip(totals, loss.detach().double().cpu())]
            continue
        for r in range(len(gens)):
            grad, loss = stepper.grad_and_loss(group_params[r].detach(), x[idx[r]], y[idx[r]], draws[r])
            _sgd_update(group_params[r], group_velocity[r], grad, lr, momentum, weight_decay)
            totals[r] += float(loss) * b
    losses = [t / max(len(y), 1) for t in totals]
    return losses[0] if single else torch.tensor(losses, dtype=torch.float64)


@dataclass
class NetGroup:
    """R nets in training: parameters and momentum (R, P), one CPU generator per net, epochs done per net."""

    params: Tensor
    velocity: Tensor
    generators: List[torch.Generator]
    epochs: List[int]

    @classmethod
    def fresh(cls, net: FunctionalNet, seeds: Sequence[int], device: torch.device) -> "NetGroup":
        """Nets initialised from ``seeds`` (each generator then orders and augments that net's batches)."""
        gens = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        params = torch.stack([net.init_params(gen) for gen in gens]).to(device)
        return cls(params, torch.zeros_like(params), gens, [0] * len(gens))

    def select(self, rows: Sequence[int]) -> "NetGroup":
        """The nets ``rows`` (copies of their tensors; the same generator objects)."""
        rows = list(rows)
        return NetGroup(self.params[rows].clone(), self.velocity[rows].clone(), [self.generators[r] for r in rows],
                        [self.epochs[r] for r in rows])

    def state(self) -> dict:
        """A CPU copy for a checkpoint."""
        return {"params": self.params.detach().cpu().clone(), "velocity": self.velocity.detach().cpu().clone(),
                "generators": [g.get_state() for g in self.generators], "epochs": list(self.epochs)}

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> "NetGroup":
        gens = []
        for gen_state in state["generators"]:
            gen = torch.Generator()
            gen.set_state(gen_state)
            gens.append(gen)
        return cls(state["params"].to(device).clone(), state["velocity"].to(device).clone(), gens,
                   [int(e) for e in state["epochs"]])


def train_group(net: FunctionalNet, group: NetGroup, x: Tensor, y: Tensor, epochs: int, lr_at: Callable[[int], float],
                momentum: float, weight_decay: float, batch_size: int, augment: Optional[Augment] = None,
                stepper: Optional[Stepper] = None, together: bool = False,
                after_epoch: Optional[Callable[[NetGroup, List[int], Tensor], None]] = None,
                on_interrupt: Optional[Callable[[dict], None]] = None) -> NetGroup:
    """Train every net of ``group`` to ``epochs`` epochs: the one training loop of experts and evaluation.

    Nets at different epochs (a resumed run) are brought level first, the ones furthest behind trained
    one epoch at a time, then all go on side by side (:func:`sgd_epoch`, ``together`` as there).
    ``lr_at(epoch)``: the step size of that epoch. ``after_epoch(group, rows, losses)``: called after every
    epoch with the rows of the nets that just trained and their mean losses. ``on_interrupt(state)``: on
    Ctrl-C during an epoch or its ``after_epoch``, called with :meth:`NetGroup.state` as it was at the start
    of that epoch, then the KeyboardInterrupt goes on.
    """
    while group.epochs and min(group.epochs) < epochs:
        epoch = min(group.epochs)
        rows = [r for r, e in enumerate(group.epochs) if e == epoch]
        start = group.state() if on_interrupt is not None else None
        try:
            part = group if len(rows) == len(group.epochs) else group.select(rows)
            losses = sgd_epoch(net, part.params, part.velocity, x, y, lr_at(epoch), momentum, weight_decay,
                               batch_size, part.generators, augment, stepper, together)
            if part is not group:
                group.params[rows], group.velocity[rows] = part.params, part.velocity
            for r in rows:
                group.epochs[r] += 1
            if after_epoch is not None:
                after_epoch(group, rows, losses)
        except KeyboardInterrupt:       # the epoch is done again on resume, from the state it started from
            if on_interrupt is not None:
                on_interrupt(start)
            raise
    return group


def _file_config(split, config: ExpertConfig) -> dict:
    return {"features": split.feature_config.to_dict(), "expert": config.to_dict(),
            "in_shape": list(split.in_shape), "num_classes": split.num_classes,
            "standardized": split.norm is not None}


def _check_same(path: Path, kind: str, file_config: dict) -> dict:
    """Load ``path`` and check it was made with ``file_config`` (the expert count may differ)."""
    obj = load_artifact(path, kind=kind, expected_config=file_config,
                        config_keys=("features", "in_shape", "num_classes", "standardized"))
    if rounding_free(obj["config"].get("expert", {}), "num_experts") != rounding_free(file_config["expert"],
                                                                                     "num_experts"):
        raise FileFormatError(f"{path}: made with a different expert config ({obj['config'].get('expert')} "
                              f"vs {file_config['expert']})")
    return obj


def _validate(config: ExpertConfig, split) -> None:
    if config.num_experts < 1 or config.epochs < 1:
        raise ParameterError(f"num_experts and epochs must be >= 1, got {config.num_experts}, {config.epochs}")
    if not (config.lr > 0 and math.isfinite(config.lr)) or config.batch_size < 1:
        raise ParameterError(f"expert lr must be finite and > 0 and batch_size >= 1, got {config.lr}, "
                             f"{config.batch_size}")
    if len(split.y_train) == 0:
        raise ParameterError("the training split is empty")


def train_experts(split, config: ExpertConfig, out_dir: Path, resume: bool = False,
                  progress: bool = True) -> List[Path]:
    """Train ``config.num_experts`` experts on ``split`` (a FeatureSplit); one trajectory file each.

    Returns the paths ``out_dir/expert_{k:03d}.pt``. Without ``resume`` an existing expert file is an
    error (ParameterError naming it, before any training); with ``resume`` finished experts of the same
    config are kept and unfinished ones continue from their last epoch. ``config.ensemble``: the
    unfinished experts train together (:func:`train_group`, ``together=True``), else one after another;
    either way each keeps its own seed, trajectory file and per-epoch checkpoint.

    Under torchrun (:mod:`ddfad_fast.distributed`, W > 1 processes): rank 0 checks ``out_dir`` and deals
    the unfinished experts out in order, the i-th to rank i % W (a fresh run: expert k on rank k % W);
    each rank trains its own (together with ``config.ensemble``) and writes their files into the shared
    ``out_dir``. Every file is the one a single process writes (expert k keeps seed ``config.seed + k``).
    Then the ranks wait for each other; when any rank failed every rank raises (the failed one its own
    error, the others a DDFADError), and every finished expert and per-epoch checkpoint stays for
    ``resume``. Every rank returns all K paths.
    """
    _validate(config, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    file_config = _file_config(split, config)
    net = build_model(config.model, split.in_shape, split.num_classes)
    paths = [expert_path(out_dir, k) for k in range(config.num_experts)]
    size, me = distributed.world_size(), distributed.rank()
    # rank 0 alone reads the folder, before any rank writes into it; every rank gets its answer
    checked = distributed.together(lambda: (_unfinished(paths, file_config, resume), file_config),
                                   run=distributed.is_main())
    todo, main_config = distributed.broadcast_object(checked)
    mine = todo[me::size]
    bar = None
    if progress and distributed.is_main():
        from tqdm.auto import tqdm
        if size == 1:
            bar = tqdm(total=config.num_experts * config.epochs, desc="experts", unit="epoch",
                       initial=(config.num_experts - len(todo)) * config.epochs)
        else:
            bar = tqdm(total=len(mine) * config.epochs, desc=f"experts (rank 0 of {size})", unit="epoch")
    error: Optional[BaseException] = None
    try:
        if main_config != file_config:
            differ = sorted(key for key in file_config if file_config[key] != main_config.get(key))
            raise ParameterError(f"rank {me}'s {', '.join(differ)} differ from rank 0's; every rank must load "
                                 f"the same data with the same options")
        for ks in ([mine] if config.ensemble else [[k] for k in mine]):
            if ks:
                _train_some(net, split, config, ks, out_dir, file_config, resume, bar)
    except BaseException as exc:  # noqa: BLE001 - the other ranks learn of it below, then it goes on
        error = exc
    finally:
        if bar is not None:
            bar.close()
    if size > 1:
        try:
            everyone = distributed.all_ok(error is None)
        except Exception:
            if error is not None:
                raise error
            raise
        if error is None and not everyone:
            raise DDFADError(f"another rank failed while training experts; the finished experts and per-epoch "
                             f"checkpoints are in {out_dir}: run the same command with --resume to finish the set")
    if error is not None:
        raise error
    return paths


def _unfinished(paths: List[Path], file_config: dict, resume: bool) -> List[int]:
    """The experts of ``paths`` with no trajectory file yet; the existing files checked against ``file_config``
    (with ``resume``; without it an existing file is a ParameterError)."""
    todo = []
    for k, path in enumerate(paths):
        if not path.exists():
            todo.append(k)
        elif not resume:
            raise ParameterError(f"{path} exists; pass resume=True (--resume) to keep it or use another folder")
        else:
            _check_same(path, "trajectory", file_config)
    return todo


def _train_some(net: FunctionalNet, split, config: ExpertConfig, ks: List[int], out_dir: Path, file_config: dict,
                resume: bool, bar) -> None:
    """Experts ``ks`` trained side by side from their seeds (or their partial files, with ``resume``)."""
    monitor, x_mon, y_mon = split.monitor_set()
    stepper = training_stepper(net, config.compile)
    group = NetGroup.fresh(net, [config.seed + k for k in ks], split.x_train.device)
    records = []                                 # per expert: CPU snapshots, losses and monitor accuracies so far
    for r, k in enumerate(ks):
        partial = _partial_path(out_dir, k)
        if resume and partial.exists():
            state = _check_same(partial, "expert_progress", file_config)
            group.params[r], group.velocity[r] = state["params"], state["velocity"]
            group.generators[r].set_state(state["generator"])
            group.epochs[r] = len(state["snapshots"]) - 1
            records.append({"snapshots": list(state["snapshots"].unbind(0)), "train_loss": list(state["train_loss"]),
                            "monitor_acc": list(state["monitor_acc"])})
            if bar is not None:
                bar.update(group.epochs[r])
        else:
            records.append({"snapshots": [group.params[r].detach().cpu().clone()], "train_loss": [], "monitor_acc": []})

    def after_epoch(group: NetGroup, rows: List[int], losses: Tensor) -> None:
        report_compile_fallback(stepper, config.compile)
        for j, r in enumerate(rows):
            k, rec, epoch = ks[r], records[r], group.epochs[r]
            require_finite(f"expert {k}'s training (loss {float(losses[j]):.4g} at epoch {epoch})", losses[j],
                           group.params[r], blame=f"lower the expert lr ({config.lr:g}) or check the features",
                           kept=str(_partial_path(out_dir, k)) if epoch > 1 else None)
            rec["snapshots"].append(group.params[r].detach().cpu().clone())
            rec["train_loss"].append(float(losses[j]))
            rec["monitor_acc"].append(accuracy(net, group.params[r], x_mon, y_mon))
            if epoch < config.epochs:
                save_artifact(_partial_path(out_dir, k), "expert_progress",
                              {"snapshots": torch.stack(rec["snapshots"]), "params": group.params[r].cpu().clone(),
                               "velocity": group.velocity[r].cpu().clone(), "generator": group.generators[r].get_state(),
                               "train_loss": rec["train_loss"], "monitor_acc": rec["monitor_acc"]}, config=file_config)
            else:
                payload = {"params": torch.stack(rec["snapshots"]).float(), "seed": config.seed + k,
                           "train_loss": rec["train_loss"], "monitor_acc": rec["monitor_acc"], "monitor_split": monitor}
                if split.norm is not None:
                    payload.update(split.norm.to_payload())
                save_artifact(expert_path(out_dir, k), "trajectory", payload, config=file_config)
                _partial_path(out_dir, k).unlink(missing_ok=True)
            if bar is not None:
                bar.set_postfix(expert=k, epoch=epoch, loss=f"{rec['train_loss'][-1]:.3f}",
                                **{f"{monitor}_acc": f"{rec['monitor_acc'][-1]:.3f}"})
                bar.update(1)
            pause.point("experts")

    train_group(net, group, split.x_train, split.y_train, config.epochs, lambda epoch: config.lr, config.momentum,
                config.weight_decay, config.batch_size, config.augment, stepper, config.ensemble, after_epoch)


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
    try:
        expert_config = ExpertConfig.from_dict(ref["expert"]).replace(num_experts=len(files))
        size = build_model(expert_config.model, tuple(ref["in_shape"]), int(ref["num_classes"])).num_params
    except (ParameterError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{files[0]}: field 'config.expert' is not a usable expert config ({exc})") from None
    for f, p in zip(files, params):
        if p.shape[1] != size:
            raise FileFormatError(f"{f}: field 'params' holds {p.shape[1]} parameters per snapshot, but its model "
                                  f"has {size}; the file is damaged or was not written by this ddfad_fast")
    return Trajectories(params, expert_config, tuple(ref["in_shape"]), int(ref["num_classes"]),
                        FeatureConfig.from_dict(ref["features"]), norm)
