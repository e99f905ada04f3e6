"""The MTT outer loop (docs/architecture.md section 6) with atomic checkpoints and exact resume.

Every iteration draws, from one seeded generator, ``trajectories_per_iteration`` (K) trajectories, each an
expert k, a start epoch t in the window (``start_window``: [0, max_start_epoch], or the window of the
data ratio, :mod:`ddfad_fast.train.window`) and the student's minibatches and augmentation seeds
(in the order j = 0..K-1); unrolls ``syn_steps`` student steps from each theta*_t
(:mod:`ddfad_fast.train.unroll`); averages the K losses and gradients; and takes one SGD-with-momentum step on
the synthetic features (``lr_data``) and on the student step size alpha (``lr_alpha``). The synthetic set
starts as ``cpc`` real clips of every class (random ones, random ones the experts classify correctly, or
the herding coreset: ``init``); with
``distill_fraction`` < 1 only that share of each class's clips is updated and the rest stay real
(partial update, after SelMatch). With ``ema_decay`` d > 0 the run also keeps x_ema = d x_ema + (1 - d) x
after every update, from the initial clips, and returns it (and evaluates and checkpoints it) instead of the
last x (after FTD, Du et al., CVPR 2023). K = 1 is the original MTT loop.

Several processes (``torchrun``, :mod:`ddfad_fast.distributed`): every rank draws all K trajectories
and unrolls those with j % world_size == rank; one all-reduce sums the gradients and losses, and every
rank applies the same update, so all hold the same state. The result equals one process with the same K
(up to the order of the sums: rounding only). Rank 0 reads and writes every file (checkpoint, history)
and sends its starting state (fresh or resumed) and memory plan to the others; a failure or a
divergence on one rank stops every rank.

Files in ``out_dir``: ``checkpoint.pt`` (kind "distill_checkpoint": synthetic data, alpha, momentum
buffers, iteration, generator state, history; written atomically every ``checkpoint_every``
iterations, at the end and on Ctrl-C) and ``history.json`` (the same history, readable). A checkpoint
made with another configuration, expert set or training data is refused (FileFormatError). A resumed
run ends exactly where an uninterrupted one would (same unroll mode, compile setting and thread count
assumed: they change rounding only). The memory plan (unroll mode and per-step batch chosen for
``max_memory_gb``) is made once, when a run starts, and stored in the checkpoint: resuming with the same
settings reuses it, whatever memory the process happens to use then.

Defaults, measured on the shared 2-core CPU (bench/mtt_memory.py and a 60-iteration FSDD run):

* ``unroll="reverse"``: exact like "naive" (float64 gradients agree to 1e-12) and flat in N; see
  bench/results/mtt_memory.json for memory and time against the naive unroll.
* ``compile=True``: compiled reverse steps ran 1.58x faster than eager ones (bench/results/mtt_time.json: ConvNet
  width 128, CPC 10, N 10, 2 threads: 17.0 s vs 26.9 s per iteration; naive 26.8 s). Compilation costs ~40 s once per shape (a few
  seconds from inductor's disk cache), so it pays off beyond ~100 iterations of that size; a 60-iteration
  width-16 run took 22 s compiled vs 8 s eager. Unavailable or failing compilation falls back to eager,
  logged and recorded in ``history["sessions"]``.
* ``augment``: the :class:`~ddfad_fast.config.Augment` of the experts and of evaluation, applied to every
  student step (the presets set one family for all three; see ddfad_fast/presets.py for measurements).
* ``labels="soft"``: the labels are learnable logits (N, C), initialised, per clip, with the mean
  logits of the experts' snapshots ``label_expert_epoch`` that classify it correctly (all experts' where none
  does; after DATM), and updated by SGD with momentum
  (``lr_labels``) from the same reverse sweep; evaluation trains towards their softmax.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from .. import distributed, pause
from ..config import DistillConfig, ExpertConfig, FeatureConfig
from ..data import FeatureNorm
from ..errors import DDFADError, NonFiniteError, ParameterError
from .experts import Trajectories
from ..io import save_artifact
from .callbacks import as_callbacks
from .guards import is_finite
from .models import FunctionalNet, build_model
from ..resources import GIB
from .memory import MemoryPlan, plan_memory
from .unroll import Augment, Stepper, StepPlan, make_plan, unroll
from .window import start_epoch_window, window_used
from .distill_state import (CHECKPOINT_NAME, PER_ITERATION, DistillState, checkpoint_identity,
                            history_upto, initial_state, load_checkpoint, new_history, save_checkpoint, state_to,
                            stored_plan, update_mask, validate_inputs)

log = logging.getLogger(__name__)

EvaluateFn = Callable[[Tensor, Tensor, float], dict]
ALPHA_FLOOR = 0.01        # the learned step size never falls below this fraction of alpha_init


class DistillationDiverged(NonFiniteError):
    """The trajectory-matching loss, or the synthetic set, became NaN or infinite."""


@dataclass
class DistillResult:
    """A distilled set: ``features`` (N, 3, F, T) float32 (standardised with ``norm`` when set),
    ``labels`` (N,) int64 classes, ``soft_labels`` (N, C) learned logits (labels="soft") or None, the
    learned ``alpha``."""

    features: Tensor
    labels: Tensor
    alpha: float
    history: dict
    config: DistillConfig
    num_classes: int
    soft_labels: Optional[Tensor] = None
    norm: Optional[FeatureNorm] = None

    def save(self, path, feature_config: FeatureConfig, expert_config: Optional[ExpertConfig] = None,
             class_names: Optional[List[str]] = None) -> None:
        """Atomically write a "distilled" file (torch.load(weights_only=True) reads it back). It carries
        everything evaluation and reconstruction need: the feature config and standardisation, the model
        and training protocol of the experts, the label form and the class names."""
        config = {"features": feature_config.to_dict(), "num_classes": self.num_classes,
                  "distill": self.config.to_dict(), "standardized": self.norm is not None,
                  "class_names": list(class_names) if class_names is not None else None}
        if expert_config is not None:
            config["expert"] = expert_config.to_dict()
        soft = None if self.soft_labels is None else self.soft_labels.detach()
        if not is_finite(self.features.detach(), self.alpha, soft):
            raise NonFiniteError(f"{path}: not written: the distilled set holds NaN or infinite values")
        payload = {"features": self.features.detach().float().cpu(), "labels": self.labels.long().cpu(),
                   "alpha": torch.tensor(float(self.alpha)), "history": self.history}
        if self.soft_labels is not None:
            payload["soft_labels"] = self.soft_labels.detach().float().cpu()
        if self.norm is not None:
            payload.update(self.norm.to_payload())
        save_artifact(path, "distilled", payload, config=config)


def window_of(config: DistillConfig, traj: Trajectories, num_train: int) -> Tuple[int, int]:
    """The start epochs (first, last) a distillation with ``config`` draws from, for ``traj`` and a training
    set of ``num_train`` clips (:func:`ddfad_fast.train.window.start_epoch_window`)."""
    epochs = min(int(p.shape[0]) for p in traj.params) - 1
    return start_epoch_window(config.start_window, config.max_start_epoch, config.expert_epochs, epochs,
                              config.cpc, traj.num_classes, num_train)


def _draw(state: DistillState, n_syn: int, traj: Trajectories, config: DistillConfig, plan: MemoryPlan,
          augment: Optional[Augment], window: Tuple[int, int]) -> Tuple[List[Tuple[int, int, StepPlan]], Tensor]:
    """The iteration's K trajectories (expert, start epoch in ``window``, student-step plan), drawn in the
    order j = 0..K-1 from the state's generator, and the generator state after them: the same on every rank
    and for any number of processes."""
    gen = torch.Generator()
    gen.set_state(state.generator_state)
    draws = []
    for _ in range(config.trajectories_per_iteration):
        expert = int(torch.randint(len(traj.params), (1,), generator=gen))
        start = window[0] + int(torch.randint(window[1] - window[0] + 1, (1,), generator=gen))
        steps = make_plan(n_syn, plan.batch_syn, config.syn_steps, gen, augment is not None)
        draws.append((expert, start, steps))
    return draws, gen.get_state()


def _reduced_gradients(state: DistillState, draws: List[Tuple[int, int, StepPlan]], net: FunctionalNet,
                       traj: Trajectories, config: DistillConfig, plan: MemoryPlan, stepper: Stepper,
                       augment: Optional[Augment]) -> Tuple[Tensor, Tensor, Optional[Tensor], List[float]]:
    """This rank's trajectories (j % world_size == rank) unrolled, summed over every rank and divided by K:
    the mean gradients w.r.t. x, alpha and the soft-label logits (None for class labels), and the K losses
    in order. One all-reduce of one flat tensor [grad_x, grad_alpha, grad_y, loss_0..loss_K-1, failed]."""
    k = len(draws)
    world, me = distributed.world_size(), distributed.rank()
    x = state.x
    nx, ny = x.numel(), state.y.numel() if state.mom_y is not None else 0
    flat = torch.zeros(nx + 1 + ny + k + 1, dtype=x.dtype, device=x.device)
    gx, galpha, gy, losses = flat[:nx], flat[nx:nx + 1], flat[nx + 1:nx + 1 + ny], flat[nx + 1 + ny:nx + 1 + ny + k]
    failure: Optional[Exception] = None
    try:
        for n, j in enumerate(range(me, k, world)):
            expert, start, steps = draws[j]
            params = traj.params[expert]
            theta0 = params[start].to(device=x.device, dtype=x.dtype)
            target = params[start + config.expert_epochs].to(device=x.device, dtype=x.dtype)
            steps = StepPlan(steps.indices.to(x.device), steps.seeds)
            out = unroll(net, x, state.y, state.alpha, theta0, target, steps, plan.unroll, augment, stepper)
            parts = [(gx, out.grad_x), (galpha, out.grad_alpha)] + ([(gy, out.grad_y)] if ny else [])
            for slot, value in parts:       # the first one copied, not added to zeros: K = 1 stays bit for bit
                (slot.copy_ if n == 0 else slot.add_)(value.detach().reshape(-1))
            losses[j] = out.loss.detach()
    except Exception as exc:          # noqa: BLE001 - told to the other ranks, then raised
        if world == 1:
            raise
        failure = exc
        flat[-1] = 1
    if world > 1:
        where = distributed.collective_device()
        reduced = distributed.all_reduce_sum_(flat.to(where))
        flat = reduced.to(x.device) if reduced.device != x.device else reduced
        if failure is not None:
            raise failure
        if float(flat[-1]) != 0:
            raise DDFADError(f"distillation stopped at iteration {state.iteration + 1}: an unroll failed on "
                             f"{int(flat[-1])} other process(es); their error is in their output")
    grad_x = flat[:nx].view_as(x) / k
    grad_alpha = flat[nx].reshape(state.alpha.shape) / k
    grad_y = flat[nx + 1:nx + 1 + ny].view_as(state.y) / k if ny else None
    return grad_x, grad_alpha, grad_y, [float(v) for v in flat[nx + 1 + ny:nx + 1 + ny + k]]


def _iteration(state: DistillState, history: dict, labels: Tensor, net: FunctionalNet, traj: Trajectories,
               config: DistillConfig, plan: MemoryPlan, stepper: Stepper, augment: Optional[Augment],
               window: Tuple[int, int], mask: Optional[Tensor]) -> DistillState:
    """One MTT iteration: the new state (``state`` is left untouched); appends to ``history``."""
    draws, generator_state = _draw(state, len(labels), traj, config, plan, augment, window)
    began = time.perf_counter()
    grad_x, grad_alpha, grad_y, losses = _reduced_gradients(state, draws, net, traj, config, plan, stepper, augment)
    loss = sum(losses) / len(losses)
    # decided from the reduced values: every rank raises at the same iteration
    if not math.isfinite(loss) or not bool(torch.isfinite(grad_x).all()):
        what = "trajectory-matching loss" if not math.isfinite(loss) else "gradient of the synthetic set"
        raise DistillationDiverged(f"the {what} became NaN or infinite at iteration {state.iteration + 1} "
                                   f"(loss {loss:.4g}, alpha {float(state.alpha):.4g}); lower lr_data "
                                   f"({config.lr_data:g}) or lr_alpha")
    if mask is not None:            # partial update: the kept real clips get no step
        grad_x = grad_x * mask
    mom_x = config.momentum * state.mom_x + grad_x
    mom_alpha = config.momentum * state.mom_alpha + grad_alpha
    y, mom_y = state.y, state.mom_y
    if mom_y is not None:
        mom_y = config.momentum * mom_y + grad_y
        y = y - config.lr_labels * mom_y
    experts, starts = [d[0] for d in draws], [d[1] for d in draws]
    if len(draws) == 1:
        experts, starts = experts[0], starts[0]
    for key, value in zip(PER_ITERATION, (loss, float(state.alpha), experts, starts, time.perf_counter() - began)):
        del history[key][state.iteration:]
        history[key].append(value)
    # a step size must stay positive: alpha is kept at or above 1 % of its initial value
    alpha = (state.alpha - config.lr_alpha * mom_alpha).clamp_min(ALPHA_FLOOR * config.alpha_init)
    x = state.x - config.lr_data * mom_x
    if not is_finite(x, alpha, y):
        raise DistillationDiverged(f"the synthetic set became NaN or infinite at iteration {state.iteration + 1} "
                                   f"(lr_data {config.lr_data:g}, lr_alpha {config.lr_alpha:g}); lower lr_data")
    x_ema = None
    if state.x_ema is not None:
        x_ema = config.ema_decay * state.x_ema + (1 - config.ema_decay) * x.detach()
    return DistillState(x, alpha, mom_x, mom_alpha, state.iteration + 1, generator_state, y, mom_y, x_ema)


def _session_info(plan: MemoryPlan, stepper: Stepper, start_iteration: int, config: DistillConfig,
                  window: Tuple[int, int], used: str) -> dict:
    return {"start_iteration": start_iteration, "processes": distributed.world_size(),
            "start_window": config.start_window, "start_window_used": used, "start_epochs": list(window),
            "trajectories_per_iteration": config.trajectories_per_iteration,
            "unroll": plan.unroll, "batch_syn": plan.batch_syn,
            "compile_requested": bool(config.compile and plan.unroll == "reverse"), "compiled": stepper.compiled,
            "compile_error": stepper.compile_error, "memory_estimate_gb": plan.estimate_bytes / GIB,
            "memory_changes": list(plan.changed)}


def _report(message: str, bar, level: int = logging.INFO) -> None:
    """A log line (rank 0 only); also above the progress bar when there is one."""
    if not distributed.is_main():
        return
    log.log(level, message)
    if bar is not None and level < logging.WARNING:
        bar.write(f"distill: {message}")


def preflight(x_train: Tensor, y_train: Tensor, trajectories: Trajectories, config: DistillConfig,
              resume_from: Optional[Path] = None) -> Tuple[FunctionalNet, MemoryPlan]:
    """Check a distillation before it starts, and plan its memory.

    Parameters
    ----------
    x_train, y_train : Tensor
        As for :func:`distill`.
    trajectories : Trajectories
        The experts.
    config : DistillConfig
        The distillation settings.
    resume_from : Path, optional
        A checkpoint whose stored memory plan is reused when it answers the same settings
        (:func:`~ddfad_fast.train.distill_state.stored_plan`).

    Returns
    -------
    (FunctionalNet, MemoryPlan)
        The student net and the memory plan (unroll mode and per-step batch).

    Raises
    ------
    ParameterError
        Bad settings.
    ResourceError
        The distillation cannot fit ``config.max_memory_gb``.
    """
    validate_inputs(x_train, y_train, trajectories, config)
    net = build_model(trajectories.expert_config.model, trajectories.in_shape, trajectories.num_classes)
    plan = stored_plan(resume_from, config) if resume_from is not None else None
    if plan is None:
        plan = plan_memory(net, config.cpc * trajectories.num_classes, config, x_train.dtype, x_train.device)
    return net, plan


def distill(x_train: Tensor, y_train: Tensor, trajectories: Trajectories, config: DistillConfig,
            out_dir=None, resume: bool = False, evaluate_fn: Optional[EvaluateFn] = None,
            progress: bool = True, callbacks=None) -> DistillResult:
    """Distil ``cpc`` clips per class from a training set by matching expert trajectories (MTT).

    On Ctrl-C a checkpoint of the last complete iteration is written, then KeyboardInterrupt re-raised.
    Under torchrun (several processes in a process group) every rank calls this with the same arguments;
    ``config.trajectories_per_iteration`` must be at least the number of processes. Rank 0 alone reads
    and writes ``out_dir``, evaluates and shows progress; every rank returns the same result.

    Parameters
    ----------
    x_train : Tensor or StoredFeatures
        (N, 3, F, T) standardised training features.
    y_train : Tensor
        (N,) int64 classes.
    trajectories : Trajectories
        The experts (:func:`ddfad_fast.train.experts.load_trajectories`).
    config : DistillConfig
        ``cpc``, iterations, student steps, learning rates, window, labels, unroll mode, ``max_memory_gb``
        (the unroll mode and batch are chosen to fit it).
    out_dir : Path, optional
        Where the checkpoint and history go (None: no files).
    resume : bool
        Continue from ``out_dir``'s checkpoint (it must match this config, expert set and data); without it
        an existing checkpoint is an error.
    evaluate_fn : callable, optional
        ``evaluate_fn(x, y, alpha) -> dict`` with "mean", run every ``config.eval_every`` iterations.
    progress : bool
        Show a progress bar.
    callbacks : Callback or list of Callback, optional
        Rank 0 only; the stage "distill", scope ``cpc{cpc}``: each iteration's metrics and synthetic set.
        They change no result.

    Returns
    -------
    DistillResult
        Features (cpc x C, 3, F, T), labels, learned step size, soft labels when learned, history.

    Raises
    ------
    ParameterError
        Bad settings, or an existing checkpoint without ``resume``.
    FileFormatError
        A checkpoint made with another config, expert set or training data.
    ResourceError
        The distillation cannot fit ``config.max_memory_gb``.
    DistillationDiverged
        The synthetic set or its gradient became non-finite (the last finite checkpoint is kept).
    """
    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    main = distributed.is_main()
    net, plan = distributed.together(lambda: preflight(x_train, y_train, trajectories, config,
                                           resume_from=checkpoint if resume and main else None))
    plan = distributed.broadcast_object(plan)         # rank 0's: every rank must draw the same batches
    device = x_train.device
    # what a checkpoint must match (its data fingerprint reads the whole training set): only with files
    identity = checkpoint_identity(config, trajectories, plan.batch_syn, x_train, y_train) if out_dir is not None else {}

    def start() -> Tuple[DistillState, dict, Tensor]:
        if checkpoint is not None and checkpoint.exists():
            if not resume:
                raise ParameterError(f"{checkpoint} exists; pass resume=True (--resume) to continue it")
            state, history, labels = load_checkpoint(checkpoint, identity, device, x_train, y_train)
            if state.iteration > config.iterations:
                raise ParameterError(f"{checkpoint} is at iteration {state.iteration}, beyond iterations="
                                     f"{config.iterations}")
        else:
            state, labels = initial_state(x_train, y_train, net, trajectories, config)
            history = new_history()
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        return state, history, labels

    if distributed.world_size() == 1:
        state, history, labels = start()
    else:                  # rank 0 starts (fresh or from its checkpoint) and sends its state to the others
        begun = distributed.together(start, run=main)
        shared = distributed.broadcast_object((state_to(begun[0], torch.device("cpu")), begun[1], begun[2].cpu())
                                              if main else None)
        if main:
            state, history, labels = begun
        else:
            state, history, labels = state_to(shared[0], device), shared[1], shared[2].to(device)

    stepper = Stepper(net, compile=config.compile and plan.unroll == "reverse")
    augment = config.augment
    bar = None
    if progress and main:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.iterations, initial=state.iteration, desc=f"distill cpc{config.cpc}", unit="it")
    for change in plan.changed:
        _report(f"to fit max_memory_gb={config.max_memory_gb:g}: {change}", bar)
    window = window_of(config, trajectories, len(y_train))
    used = window_used(config.start_window, config.cpc, trajectories.num_classes, len(y_train))
    session = _session_info(plan, stepper, state.iteration, config, window, used)
    history["sessions"].append(session)
    latest = [state]            # the last complete state; replaced whole, so Ctrl-C never sees half an update
    callbacks = as_callbacks(callbacks if main else None)
    callbacks.on_stage_begin("distill", {"scope": f"cpc{config.cpc}", "cpc": config.cpc, "iterations": config.iterations,
                                         "start_iteration": state.iteration, "feature_config": trajectories.feature_config,
                                         "norm": trajectories.norm})
    try:
        _run(latest, history, labels, net, trajectories, config, plan, stepper, augment, evaluate_fn, out_dir,
             identity, bar, session, window, callbacks)
    except KeyboardInterrupt:
        if out_dir is not None and main:
            save_checkpoint(out_dir, latest[0], history, labels, identity, plan)
            _report(f"interrupted: checkpoint at iteration {latest[0].iteration} in {checkpoint}", bar)
        raise
    except DistillationDiverged as exc:          # the last finite state is kept; nothing non-finite is written
        if out_dir is not None and main:
            save_checkpoint(out_dir, latest[0], history, labels, identity, plan)
            raise DistillationDiverged(f"{exc}; the last finite state (iteration {latest[0].iteration}) is in "
                                       f"{checkpoint}") from None
        raise
    finally:
        if bar is not None:
            bar.close()
    state = latest[0]
    callbacks.on_stage_end("distill", {"scope": f"cpc{config.cpc}", "iteration": state.iteration,
                                       "alpha": float(state.alpha)})
    return DistillResult(state.synthetic().detach().clone(), labels.clone(), float(state.alpha),
                         history_upto(history, state.iteration), config, trajectories.num_classes,
                         state.y.detach().clone() if state.mom_y is not None else None, trajectories.norm)


def _run(latest: List[DistillState], history: dict, labels: Tensor, net: FunctionalNet, traj: Trajectories,
         config: DistillConfig, plan: MemoryPlan, stepper: Stepper, augment: Optional[Augment], evaluate_fn: Optional[EvaluateFn],
         out_dir: Optional[Path], identity: dict, bar, session: dict, window: Tuple[int, int],
         callbacks=None) -> None:
    """Iterate until ``config.iterations``, keeping the last complete state in ``latest[0]``."""
    reported = False
    mask = update_mask(config, len(labels))
    if mask is not None:
        mask = mask.to(device=latest[0].x.device, dtype=latest[0].x.dtype)
    while latest[0].iteration < config.iterations:
        new = _iteration(latest[0], history, labels, net, traj, config, plan, stepper, augment, window, mask)
        if session["compile_requested"] and (not reported or session["compiled"] != stepper.compiled):
            session.update(compiled=stepper.compiled, compile_error=stepper.compile_error)
            if stepper.compiled:
                _report("per-step functions compiled with torch.compile", bar)
            else:
                _report(f"torch.compile unavailable, running eager: {stepper.compile_error}", bar, logging.WARNING)
            reported = True
        if (evaluate_fn is not None and config.eval_every and new.iteration % config.eval_every == 0
                and distributed.is_main()):
            result = evaluate_fn(new.synthetic().detach().clone(), new.y.detach().clone(), float(new.alpha))
            history["eval"] = [e for e in history["eval"] if e["iteration"] < new.iteration]
            history["eval"].append({"iteration": new.iteration, "mean": float(result["mean"]),
                                    "std": float(result.get("std", 0.0))})
            _report(f"iteration {new.iteration}: evaluation accuracy {100 * float(result['mean']):.2f} %", bar)
        latest[0] = new
        if out_dir is not None and distributed.is_main() and (
                new.iteration == config.iterations or
                (config.checkpoint_every and new.iteration % config.checkpoint_every == 0)):
            save_checkpoint(out_dir, new, history, labels, identity, plan)
        if callbacks:           # after the checkpoint: a failing callback loses no iteration
            done = new.iteration - 1
            metrics = {"loss": history["loss"][done], "alpha": float(new.alpha), "seconds": history["seconds"][done]}
            evaluated = [e["mean"] for e in history["eval"] if e["iteration"] == new.iteration]
            if evaluated:
                metrics["val_accuracy"] = evaluated[-1]
            callbacks.on_distill_iteration(new.iteration, metrics)
            callbacks.on_distilled_set(new.iteration, new.synthetic().detach().clone(), labels.clone())
        if bar is not None:
            bar.set_postfix(loss=f"{history['loss'][new.iteration - 1]:.4f}", alpha=f"{float(new.alpha):.4g}")
            bar.update(1)
        pause.point("distillation")
