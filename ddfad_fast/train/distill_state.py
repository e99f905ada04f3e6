"""The state of a distillation between iterations: input checks, the starting synthetic set, the history,
and the atomic checkpoint a run resumes from (what :mod:`ddfad_fast.train.distill` keeps on disk).

A checkpoint (kind "distill_checkpoint") holds the synthetic data, alpha, momentum buffers, iteration,
generator state, history, memory plan and thread count; it is refused (FileFormatError) when it was made
with another configuration, expert set or training data (:func:`checkpoint_identity`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import distributed
from ..config import INITS, ROUNDING_ONLY_FIELDS, DistillConfig
from ..data import data_fingerprint
from ..errors import FileFormatError, ParameterError
from ..io import atomic_write_json, load_artifact, save_artifact
from .evaluate import class_subset_indices, correct_real_subset, expert_soft_labels, herding_subset
from .experts import Trajectories
from .guards import finite_settings
from .memory import MemoryPlan, requested_settings
from .models import FunctionalNet
from .threads import check_resume_threads, saved_threads, thread_record
from .unroll import UNROLL_MODES
from .window import START_WINDOWS, window_used

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
CHECKPOINT_KIND = "distill_checkpoint"
# DistillConfig fields that do not change the result of a run (the rest must match to resume)
_FREE_FIELDS = ("iterations", "checkpoint_every", "eval_every", "max_memory_gb", "unroll", "compile", "batch_syn")


@dataclass
class DistillState:
    """Everything an iteration changes; replaced as a whole once an iteration is complete."""

    x: Tensor
    alpha: Tensor
    mom_x: Tensor
    mom_alpha: Tensor
    iteration: int
    generator_state: Tensor
    y: Tensor                   # the classes (N,) int64, or the learned label logits (N, C)
    mom_y: Optional[Tensor]     # momentum of the label logits (None for class labels)
    x_ema: Optional[Tensor] = None  # moving average of x (ema_decay > 0), the set the run returns

    def synthetic(self) -> Tensor:
        """The synthetic set this state stands for: the moving average when one is kept, else x."""
        return self.x if self.x_ema is None else self.x_ema


# ----------------------------------------------------------------------------- validation

def validate_inputs(x_train: Tensor, y_train: Tensor, traj: Trajectories, config: DistillConfig) -> None:
    c = config
    finite_settings([("lr_data", c.lr_data), ("lr_alpha", c.lr_alpha), ("alpha_init", c.alpha_init),
                     ("lr_labels", c.lr_labels), ("momentum", c.momentum)])
    checks = [
        (c.cpc >= 1, f"cpc must be >= 1, got {c.cpc}"),
        (-2 ** 62 <= c.seed < 2 ** 62, f"seed must be in [-2**62, 2**62), got {c.seed}"),
        (c.syn_steps >= 1, f"syn_steps must be >= 1, got {c.syn_steps}"),
        (c.expert_epochs >= 1, f"expert_epochs must be >= 1, got {c.expert_epochs}"),
        (c.max_start_epoch >= 0, f"max_start_epoch must be >= 0, got {c.max_start_epoch}"),
        (c.iterations >= 0, f"iterations must be >= 0, got {c.iterations}"),
        (c.lr_data > 0 and c.lr_alpha >= 0, f"need lr_data > 0 and lr_alpha >= 0, got {c.lr_data}, {c.lr_alpha}"),
        (c.alpha_init > 0, f"alpha_init must be > 0, got {c.alpha_init}"),
        (0 <= c.momentum < 1, f"momentum must be in [0, 1), got {c.momentum}"),
        (c.batch_syn is None or c.batch_syn >= 1, f"batch_syn must be >= 1 or None, got {c.batch_syn}"),
        (c.unroll in UNROLL_MODES, f"unroll must be one of {UNROLL_MODES}, got {c.unroll!r}"),
        (c.checkpoint_every >= 0 and c.eval_every >= 0,
         f"checkpoint_every and eval_every must be >= 0, got {c.checkpoint_every}, {c.eval_every}"),
        (c.max_memory_gb is None or c.max_memory_gb > 0, f"max_memory_gb must be > 0, got {c.max_memory_gb}"),
        (c.start_window in START_WINDOWS, f"start_window must be one of {START_WINDOWS}, got {c.start_window!r}"),
        (c.labels in ("hard", "soft"), f"labels must be 'hard' or 'soft', got {c.labels!r}"),
        (c.lr_labels > 0, f"lr_labels must be > 0, got {c.lr_labels}"),
        (c.init in INITS, f"init must be one of {INITS}, got {c.init!r}"),
        (0 < c.distill_fraction <= 1, f"distill_fraction must be in (0, 1], got {c.distill_fraction}"),
        (0 <= c.ema_decay < 1, f"ema_decay must be in [0, 1), got {c.ema_decay}"),
        (c.trajectories_per_iteration >= 1,
         f"trajectories_per_iteration must be >= 1, got {c.trajectories_per_iteration}"),
        (c.trajectories_per_iteration >= distributed.world_size(),
         f"trajectories_per_iteration={c.trajectories_per_iteration} is less than the {distributed.world_size()} "
         f"processes: every process unrolls at least one trajectory per iteration"),
    ]
    for ok, message in checks:
        if not ok:
            raise ParameterError(message)
    epochs = min(int(p.shape[0]) for p in traj.params) - 1
    if not -(epochs + 1) <= c.label_expert_epoch <= epochs:
        raise ParameterError(f"label_expert_epoch={c.label_expert_epoch} is outside the {epochs} epochs of the experts")
    if window_used(c.start_window, c.cpc, traj.num_classes, int(x_train.shape[0])) == "fixed" and c.max_start_epoch + c.expert_epochs > epochs:
        raise ParameterError(f"max_start_epoch + expert_epochs = {c.max_start_epoch} + {c.expert_epochs} exceeds "
                             f"the {epochs} epochs of the expert trajectories")
    if len(x_train.shape) != 4 or tuple(x_train.shape[1:]) != tuple(traj.in_shape):
        raise ParameterError(f"x_train must have shape (N, {', '.join(map(str, traj.in_shape))}) like the experts' "
                             f"inputs, got {tuple(x_train.shape)}")
    if y_train.shape != (x_train.shape[0],):
        raise ParameterError(f"y_train must have shape ({x_train.shape[0]},), got {tuple(y_train.shape)}")
    counts = torch.bincount(y_train.long(), minlength=traj.num_classes)
    if len(counts) != traj.num_classes:
        raise ParameterError(f"y_train has labels up to {len(counts) - 1} but the experts know "
                             f"{traj.num_classes} classes")
    if int(counts.min()) < c.cpc:
        raise ParameterError(f"cpc={c.cpc} exceeds the {int(counts.min())} training clips of class "
                             f"{int(counts.argmin())}")


# ----------------------------------------------------------------------------- checkpoints

def same_data(saved, x: Tensor, y: Tensor) -> bool:
    """Whether a checkpoint's data fingerprint is this data's; checkpoints of earlier releases hold
    [N, sum x, sum x^2, sum y] in float64, equal up to summation order."""
    if isinstance(saved, str):
        return saved == data_fingerprint(x, y)
    x64 = x.detach().double()
    now = [float(x.shape[0]), float(x64.sum()), float((x64 * x64).sum()), float(y.long().sum())]
    return (isinstance(saved, list) and len(saved) == 4 and
            all(abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(saved, now)))


def checkpoint_identity(config: DistillConfig, traj: Trajectories, batch_syn: Optional[int], x: Tensor, y: Tensor) -> dict:
    """What a checkpoint must have been made with to be resumed (ROUNDING_ONLY_FIELDS of the experts excluded)."""
    distill = {k: v for k, v in config.to_dict().items() if k not in _FREE_FIELDS}
    # the window this CPC uses: "auto" resumes a checkpoint of the same window made with "fixed" or "ratio"
    distill["start_window"] = window_used(config.start_window, config.cpc, traj.num_classes, int(x.shape[0]))
    if distill["trajectories_per_iteration"] == 1:      # checkpoints of earlier releases have no such field
        del distill["trajectories_per_iteration"]
    for name, default in (("start_window", "fixed"), ("init", "random"), ("distill_fraction", 1.0),
                          ("ema_decay", 0.0)):
        if distill[name] == default:                    # nor these
            del distill[name]
    expert = {k: v for k, v in traj.expert_config.to_dict().items() if k not in ROUNDING_ONLY_FIELDS}
    return {"distill": distill, "batch_syn": batch_syn, "expert": expert,
            "features": traj.feature_config.to_dict(), "num_classes": traj.num_classes,
            "in_shape": list(traj.in_shape), "data": data_fingerprint(x, y)}   # bytes: thread-count independent


PER_ITERATION = ("loss", "alpha", "expert", "start_epoch", "seconds")


def new_history() -> dict:
    """Per iteration: loss (the mean over the K trajectories), alpha (before the update), expert and
    start_epoch (ints for K = 1, lists of K for K > 1), seconds (of this process's unrolls);
    ``eval``: [{iteration, mean, std}]; ``sessions``: one dict per (re)start (unroll, compiled, ...)."""
    return {**{k: [] for k in PER_ITERATION}, "eval": [], "sessions": []}


def history_upto(history: dict, iteration: int) -> dict:
    """A copy of ``history`` holding the first ``iteration`` iterations only."""
    out = {k: list(history[k][:iteration]) for k in PER_ITERATION}
    out["eval"] = [dict(e) for e in history["eval"] if e["iteration"] <= iteration]
    out["sessions"] = [dict(s) for s in history["sessions"]]
    return out


def save_checkpoint(out_dir: Path, state: DistillState, history: dict, labels: Tensor, identity: dict,
                     plan: MemoryPlan) -> None:
    history = history_upto(history, state.iteration)
    payload = {"x": state.x.detach().cpu(), "labels": labels.cpu(), "alpha": state.alpha.detach().cpu(),
               "mom_x": state.mom_x.cpu(), "mom_alpha": state.mom_alpha.cpu(), "iteration": state.iteration,
               "generator": state.generator_state, "history": history, "plan": plan.to_payload(), **thread_record()}
    if state.mom_y is not None:
        payload.update(soft_labels=state.y.detach().cpu(), mom_y=state.mom_y.cpu())
    if state.x_ema is not None:
        payload.update(x_ema=state.x_ema.detach().cpu())
    save_artifact(out_dir / CHECKPOINT_NAME, CHECKPOINT_KIND, payload, config=identity)
    atomic_write_json(out_dir / HISTORY_NAME, history)


def stored_plan(path: Path, config: DistillConfig) -> Optional[MemoryPlan]:
    """The memory plan stored in the checkpoint ``path`` when it was made for ``config``'s unroll,
    batch_syn and max_memory_gb; None when there is no checkpoint, it holds no plan, or the plan answers
    other settings. FileFormatError for a file that is not a distillation checkpoint."""
    if not Path(path).is_file():
        return None
    record = load_artifact(path, kind=CHECKPOINT_KIND).get("plan")
    if not isinstance(record, dict) or record.get("requested") != requested_settings(config):
        return None
    return MemoryPlan(record["unroll"], record["batch_syn"], int(record["estimate_bytes"]),
                      int(record["baseline_bytes"]), list(record["changed"]), dict(record["requested"]))


def load_checkpoint(path: Path, identity: dict, device: torch.device, x: Tensor,
                     y: Tensor) -> Tuple[DistillState, dict, Tensor]:
    obj = load_artifact(path, kind=CHECKPOINT_KIND, expected_config={k: v for k, v in identity.items() if k != "data"})
    if not same_data(obj["config"].get("data"), x, y):
        raise FileFormatError(f"{path}: made with a different config (data: another training set)")
    check_resume_threads([saved_threads(obj)], str(path))
    labels = obj["labels"].to(device)
    soft = "soft_labels" in obj
    state = DistillState(obj["x"].to(device), obj["alpha"].to(device), obj["mom_x"].to(device),
                   obj["mom_alpha"].to(device), int(obj["iteration"]), obj["generator"],
                   obj["soft_labels"].to(device) if soft else labels, obj["mom_y"].to(device) if soft else None,
                   obj["x_ema"].to(device) if "x_ema" in obj else None)
    return state, obj["history"], labels


# ----------------------------------------------------------------------------- the starting state

def initial_state(x_train: Tensor, y_train: Tensor, net: FunctionalNet, traj: Trajectories,
                   config: DistillConfig) -> Tuple[DistillState, Tensor]:
    """``cpc`` real clips per class, class by class: random ones (seeded; ``init="random"``), random ones
    among those the experts' snapshots ``label_expert_epoch`` classify correctly (``init="correct"``, DATM) or
    the herding coreset of expert 0's last snapshot (``init="herding"``, in the order herding picks them: the
    same clips as the herding baseline); alpha = alpha_init, zero momentum; soft labels start as the mean
    logits of the experts' snapshots ``label_expert_epoch`` that classify the clip correctly."""
    gen = torch.Generator().manual_seed(config.seed)
    teachers = None
    if config.init == "correct" or config.labels == "soft":
        teachers = traj.snapshots(config.label_expert_epoch).to(x_train.device)
    if config.init == "herding":
        x, labels = herding_subset(x_train, y_train, config.cpc, net, traj.params[0][-1])
    elif config.init == "correct":
        x, labels = correct_real_subset(x_train, y_train, config.cpc, net, teachers, seed=gen)
    else:
        idx = class_subset_indices(y_train, config.cpc, gen)
        x, labels = x_train[idx.to(x_train.device)], y_train[idx]
    x = x.detach().clone()
    labels = labels.to(device=x.device, dtype=torch.int64)
    alpha = torch.tensor(config.alpha_init, dtype=x.dtype, device=x.device)
    y, mom_y = labels, None
    if config.labels == "soft":
        with torch.no_grad():
            y = expert_soft_labels(net, teachers.to(device=x.device, dtype=x.dtype), x, labels)
        mom_y = torch.zeros_like(y)
    state = DistillState(x, alpha, torch.zeros_like(x), torch.zeros_like(alpha), 0, gen.get_state(), y, mom_y,
                         x.clone() if config.ema_decay > 0 else None)
    return state, labels


def update_mask(config: DistillConfig, num_clips: int) -> Optional[Tensor]:
    """(N, 1, 1, 1) 0/1 mask of the synthetic clips that distillation updates, or None when all are.

    The synthetic set is class-major (``cpc`` clips of class 0, then of class 1, ...: :func:`initial_state`).
    Per class, the last ``ceil(distill_fraction * cpc)`` clips are updated and the others stay the real
    clips they started as (partial update, after SelMatch, Lee et al., ICML 2024); with ``init="herding"``
    the kept ones are the coreset's first picks, the clips herding values most."""
    if config.distill_fraction >= 1:
        return None
    updated = math.ceil(config.distill_fraction * config.cpc)
    rank = torch.arange(num_clips) % config.cpc         # position of each clip within its class
    return (rank >= config.cpc - updated).to(torch.float32).view(-1, 1, 1, 1)


def state_to(state: DistillState, device: torch.device) -> DistillState:
    """``state`` with its tensors on ``device`` (the generator state stays on the CPU)."""
    def move(t):
        return None if t is None else t.to(device)
    return DistillState(move(state.x), move(state.alpha), move(state.mom_x), move(state.mom_alpha), state.iteration,
                  state.generator_state, move(state.y), move(state.mom_y), move(state.x_ema))
