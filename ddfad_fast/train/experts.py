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
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import distributed, pause
from ..config import ExpertConfig, FeatureConfig, rounding_free
from ..data import FeatureNorm
from ..errors import DDFADError, FileFormatError, ParameterError
from ..io import load_artifact, save_artifact
from .callbacks import as_callbacks
from .threads import check_resume_threads, saved_threads, thread_record
from .guards import require_finite
from .models import FunctionalNet, build_model
from .sgd import NetGroup, accuracy, report_compile_fallback, train_group, training_stepper


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

    def snapshots(self, epoch: int) -> Tensor:
        """Every expert's snapshot ``epoch`` (0: the initialisation, -1: the last): (num_experts, P)."""
        return torch.stack([p[epoch] for p in self.params])


def expert_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"expert_{k:03d}.pt"


def _partial_path(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"expert_{k:03d}.partial.pt"


def _file_config(split, config: ExpertConfig) -> dict:
    return {"features": split.feature_config.to_dict(), "expert": config.to_dict(),
            "in_shape": list(split.in_shape), "num_classes": split.num_classes,
            "standardized": split.norm is not None}


def _check_same(path: Path, kind: str, file_config: dict) -> dict:
    """Load ``path`` and check it was made with ``file_config`` (the expert count may differ)."""
    obj = load_artifact(path, kind=kind, expected_config=file_config,
                        config_keys=("features", "in_shape", "num_classes", "standardized"))
    saved = ExpertConfig.from_dict(obj["config"].get("expert", {})).to_dict()   # fields added since: their defaults
    if rounding_free(saved, "num_experts") != rounding_free(file_config["expert"], "num_experts"):
        raise FileFormatError(f"{path}: made with a different expert config ({obj['config'].get('expert')} "
                              f"vs {file_config['expert']})")
    return obj


def _validate(config: ExpertConfig, split) -> None:
    if config.num_experts < 1 or config.epochs < 1:
        raise ParameterError(f"num_experts and epochs must be >= 1, got {config.num_experts}, {config.epochs}")
    if not (config.lr > 0 and math.isfinite(config.lr)) or config.batch_size < 1:
        raise ParameterError(f"expert lr must be finite and > 0 and batch_size >= 1, got {config.lr}, "
                             f"{config.batch_size}")
    if config.min_epoch_steps is not None and config.min_epoch_steps < 1:
        raise ParameterError(f"expert min_epoch_steps must be None or >= 1, got {config.min_epoch_steps}")
    if len(split.y_train) == 0:
        raise ParameterError("the training split is empty")


def train_experts(split, config: ExpertConfig, out_dir: Path, resume: bool = False,
                  progress: bool = True, callbacks=None) -> List[Path]:
    """Train ``config.num_experts`` experts on a feature split; one trajectory file each.

    ``config.ensemble``: the unfinished experts train together (:func:`~ddfad_fast.train.sgd.train_group`,
    ``together=True``), else one after another; either way each keeps its own seed, trajectory file and
    per-epoch checkpoint. Under torchrun (:mod:`ddfad_fast.distributed`, W > 1 processes) rank 0 checks
    ``out_dir`` and deals the unfinished experts out in order, the i-th to rank i % W; every file is the one a
    single process writes (expert k keeps seed ``config.seed + k``). When any rank fails every rank raises
    (the failed one its own error, the others a DDFADError), and every finished expert and per-epoch
    checkpoint stays for ``resume``.

    Parameters
    ----------
    split : FeatureSplit
        Standardised features; the validation split (else test) is monitored, never chosen on.
    config : ExpertConfig
        Count, epochs, SGD settings, model, augmentation, compile and ensemble.
    out_dir : Path
        Folder of the trajectory files.
    resume : bool
        Keep finished experts of the same config and continue unfinished ones from their last epoch;
        without it an existing expert file is an error.
    progress : bool
        Show a progress bar.
    callbacks : Callback or list of Callback, optional
        The stage "experts": every expert's epoch (train loss, monitor accuracy), on the rank that trains
        it. They change no result.

    Returns
    -------
    list of Path
        ``out_dir/expert_{k:03d}.pt`` for every expert (on every rank).

    Raises
    ------
    ParameterError
        Bad settings, an empty training split, or an existing expert file without ``resume`` (named,
        before any training).
    FileFormatError
        With ``resume``: a file made with another config.
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
    callbacks = as_callbacks(callbacks)
    callbacks.on_stage_begin("experts", {"scope": "", "num_experts": config.num_experts, "epochs": config.epochs})
    try:
        if main_config != file_config:
            differ = sorted(key for key in file_config if file_config[key] != main_config.get(key))
            raise ParameterError(f"rank {me}'s {', '.join(differ)} differ from rank 0's; every rank must load "
                                 f"the same data with the same options")
        for ks in ([mine] if config.ensemble else [[k] for k in mine]):
            if ks:
                _train_some(net, split, config, ks, out_dir, file_config, resume, bar, callbacks)
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
    callbacks.on_stage_end("experts", {"scope": ""})
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
                resume: bool, bar, callbacks=None) -> None:
    """Experts ``ks`` trained side by side from their seeds (or their partial files, with ``resume``)."""
    monitor, x_mon, y_mon = split.monitor_set()
    stepper = training_stepper(net, config.compile)
    group = NetGroup.fresh(net, [config.seed + k for k in ks], split.x_train.device)
    records = []                                 # per expert: CPU snapshots, losses and monitor accuracies so far
    threads = []                                 # the thread counts the resumed partial files were written with
    for r, k in enumerate(ks):
        partial = _partial_path(out_dir, k)
        if resume and partial.exists():
            state = _check_same(partial, "expert_progress", file_config)
            threads.append(saved_threads(state))
            group.params[r], group.velocity[r] = state["params"], state["velocity"]
            group.generators[r].set_state(state["generator"])
            group.epochs[r] = len(state["snapshots"]) - 1
            records.append({"snapshots": list(state["snapshots"].unbind(0)), "train_loss": list(state["train_loss"]),
                            "monitor_acc": list(state["monitor_acc"])})
            if bar is not None:
                bar.update(group.epochs[r])
        else:
            records.append({"snapshots": [group.params[r].detach().cpu().clone()], "train_loss": [], "monitor_acc": []})
    check_resume_threads(threads, f"expert checkpoints in {out_dir}")

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
            if callbacks:
                callbacks.on_expert_epoch(k, epoch, {"train_loss": rec["train_loss"][-1],
                                                     f"{monitor}_accuracy": rec["monitor_acc"][-1]})
            if epoch < config.epochs:
                save_artifact(_partial_path(out_dir, k), "expert_progress",
                              {"snapshots": torch.stack(rec["snapshots"]), "params": group.params[r].cpu().clone(),
                               "velocity": group.velocity[r].cpu().clone(), "generator": group.generators[r].get_state(),
                               "train_loss": rec["train_loss"], "monitor_acc": rec["monitor_acc"], **thread_record()},
                              config=file_config)
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
                config.weight_decay, config.batch_size, config.augment, stepper, config.ensemble, after_epoch,
                passes=config.passes_per_epoch(len(split.y_train)))


def load_trajectories(out_dir: Path, feature_config: Optional[FeatureConfig] = None) -> Trajectories:
    """All ``expert_*.pt`` trajectories of a folder; they must share one config (but the expert count).

    Parameters
    ----------
    out_dir : Path
        The folder of :func:`train_experts`.
    feature_config : FeatureConfig, optional
        When given, the features the experts must have been trained on.

    Returns
    -------
    Trajectories
        Flat parameter snapshots (epochs + 1, P) per expert, their configs and standardisation;
        ``expert_config.num_experts`` is the number of files found.

    Raises
    ------
    FileFormatError
        No file, files that disagree, or another feature config than ``feature_config``.
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
