"""The SGD training every stage shares: a group of functional nets trained side by side
(:func:`train_group`, one epoch of one net: :func:`sgd_epoch`), the augmentation drawn per batch, the
compiled training step, and accuracies. Expert training (:mod:`ddfad_fast.train.experts`), evaluation
(:mod:`ddfad_fast.train.evaluate`) and continual learning (:mod:`ddfad_fast.apps.continual`) run these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..config import Augment
from ..errors import ParameterError
from ..ops.dispatch import warn_fallback
from .models import FunctionalNet
from .unroll import AugTensors, Stepper, augment_tensors, functional_grad_and_loss


@torch.no_grad()
def accuracy(net: FunctionalNet, params: Tensor, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Fraction of ``x`` (N, 3, F, T) classified as ``y`` (N,) by ``net`` under ``params`` (P,)."""
    if len(y) == 0:
        return float("nan")
    return int(correct_mask(net, params, x, y, batch_size).sum()) / len(y)


@torch.no_grad()
def correct_mask(net: FunctionalNet, params: Tensor, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """Which clips of ``x`` (N, 3, F, T) ``net`` under ``params`` (P,) classifies as ``y`` (N,): (N,) bool."""
    out = [net.forward(params, x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
           for i in range(0, len(y), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


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
                on_interrupt: Optional[Callable[[dict], None]] = None, passes: int = 1) -> NetGroup:
    """Train every net of ``group`` to ``epochs`` epochs: the one training loop of experts and evaluation.

    Nets at different epochs (a resumed run) are brought level first, the ones furthest behind trained
    one epoch at a time, then all go on side by side (:func:`sgd_epoch`, ``together`` as there).
    ``lr_at(epoch)``: the step size of that epoch. ``after_epoch(group, rows, losses)``: called after every
    epoch with the rows of the nets that just trained and their mean losses. ``on_interrupt(state)``: on
    Ctrl-C during an epoch or its ``after_epoch``, called with :meth:`NetGroup.state` as it was at the start
    of that epoch, then the KeyboardInterrupt goes on. ``passes``: passes over ``x`` per epoch (its loss is
    their mean), so that an epoch of a small training set can be several of its passes.
    """
    if passes < 1:
        raise ParameterError(f"passes per epoch must be >= 1, got {passes}")
    while group.epochs and min(group.epochs) < epochs:
        epoch = min(group.epochs)
        rows = [r for r, e in enumerate(group.epochs) if e == epoch]
        start = group.state() if on_interrupt is not None else None
        try:
            part = group if len(rows) == len(group.epochs) else group.select(rows)
            losses = sum(sgd_epoch(net, part.params, part.velocity, x, y, lr_at(epoch), momentum, weight_decay,
                                   batch_size, part.generators, augment, stepper, together)
                         for _ in range(passes)) / passes
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
