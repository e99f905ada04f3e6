"""Trajectory matching (MTT) for any ``torch.nn.Module``: the matching loss and its exact gradient with respect
to the synthetic data, the student step size and (soft) labels, in memory that does not grow with the
number of unrolled steps.

    from ddfad_fast import mtt
    net = mtt.ModuleNet(model)                                   # any nn.Module (no BatchNorm running stats)
    result = mtt.match(net, x_syn, y_syn, lr, start, target, steps=80, generator=gen)
    x_syn.grad, lr.grad = result.grad_x, result.grad_alpha       # then the optimiser step of your loop

The student starts at ``start`` (an expert's parameters at epoch t) and takes ``steps`` SGD steps with step
size ``lr`` on minibatches of the synthetic set; the loss is ``||theta_N - target||^2 / ||start - target||^2``
with ``target`` the expert's parameters M epochs later. ``unroll="reverse"`` (default) replays the steps
backwards one at a time, storing only the N + 1 parameter vectors; ``"naive"`` keeps autograd's graph of
all N steps (the reference; memory linear in N). Both give the same gradient (float64: 1e-10, tested).

This is the implementation :mod:`ddfad_fast.train.distill` runs (:mod:`ddfad_fast.train.unroll`), reached through an
adapter: :class:`ModuleNet` sees a module as a function of one flat parameter vector
(``torch.func.functional_call``; buffers are constants).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import ParameterError
from .unroll import UNROLL_MODES, StepPlan, Stepper, UnrollResult, make_plan, soft_cross_entropy, unroll

__all__ = ["ModuleNet", "match", "convnet", "UnrollResult", "StepPlan", "Stepper", "make_plan", "soft_cross_entropy"]

Params = Union[Tensor, Dict[str, Tensor], Iterable[Tensor]]


def _stateful_layers(module: nn.Module):
    """(name, layer, why) of the layers whose training-mode forward is not a pure function of the input."""
    for name, layer in module.named_modules():
        if not layer.training:
            continue
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            yield name, layer, "updates its running statistics at every call"
        elif isinstance(layer, nn.modules.dropout._DropoutNd) and layer.p > 0:
            yield name, layer, "draws a new random mask at every call, which the reverse sweep cannot replay"


class ModuleNet:
    """An ``nn.Module`` as a function of one flat parameter vector (P,), for :func:`match`.

    ``loss_fn(logits, labels) -> ()``: default cross-entropy against class indices (b,) or the softmax of
    label logits (b, C). ``augment(x, seed) -> x``: an optional differentiable augmentation applied to each
    student batch, deterministic in ``seed`` (a 0-dim int64 tensor: the reverse sweep replays it).
    Parameters are ordered as ``module.named_parameters()``; buffers are taken as constants. BatchNorm
    layers that track running statistics and dropout are refused in training mode (their forward is not a
    pure function: use ``track_running_stats=False``, ``.eval()``, or a stateless norm such as GroupNorm /
    InstanceNorm); that check runs again at every :func:`match`.
    """

    in_shape = None            # any input shape
    num_classes = None

    def __init__(self, module: nn.Module, loss_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 augment: Optional[Callable[[Tensor, Tensor], Tensor]] = None) -> None:
        if not isinstance(module, nn.Module):
            raise ParameterError(f"ModuleNet needs a torch.nn.Module, got {type(module).__name__}")
        self.module, self.loss_fn, self.augment = module, loss_fn or soft_cross_entropy, augment
        self.check()
        named = list(module.named_parameters())
        if not named:
            raise ParameterError(f"{type(module).__name__} has no parameters to train")
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.num_params = sum(self.numels)

    def check(self) -> None:
        """ParameterError naming every layer whose training-mode forward is not a pure function."""
        bad = [f"{name or type(layer).__name__} ({type(layer).__name__}) {why}"
               for name, layer, why in _stateful_layers(self.module)]
        if bad:
            raise ParameterError("the student's forward must be a pure function of its parameters and input, but "
                                 + "; ".join(bad) + ". Use BatchNorm(track_running_stats=False) or a stateless norm "
                                 "(GroupNorm, InstanceNorm, LayerNorm), no dropout, or call .eval() first")

    def flatten(self, params: Optional[Params] = None) -> Tensor:
        """Flat parameters (P,): of ``params`` (a dict by name, a list in ``named_parameters`` order, or
        already flat), or the module's current ones (detached copies)."""
        if params is None:
            return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        if isinstance(params, Tensor):
            if params.shape != (self.num_params,):
                raise ParameterError(f"flat parameters must have shape ({self.num_params},), got {tuple(params.shape)}")
            return params
        if isinstance(params, dict):
            missing = [n for n in self.names if n not in params]
            if missing:
                raise ParameterError(f"parameter dict lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
            params = [params[n] for n in self.names]
        params = list(params)
        if len(params) != len(self.names):
            raise ParameterError(f"expected {len(self.names)} parameter tensors, got {len(params)}")
        for name, shape, p in zip(self.names, self.shapes, params):
            if tuple(p.shape) != shape:
                raise ParameterError(f"parameter {name} must have shape {shape}, got {tuple(p.shape)}")
        return torch.cat([p.reshape(-1) for p in params])

    def unflatten(self, flat: Tensor) -> Dict[str, Tensor]:
        """Views of ``flat`` (P,) by parameter name, in their shapes."""
        out, offset = {}, 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels):
            out[name] = flat[offset:offset + numel].view(shape)
            offset += numel
        return out

    def forward(self, theta: Tensor, x: Tensor) -> Tensor:
        """The module's output on ``x`` with parameters ``theta`` (P,) (buffers as they are)."""
        buffers = {name: b for name, b in self.module.named_buffers()}
        return torch.func.functional_call(self.module, {**self.unflatten(theta), **buffers}, (x,))


def convnet(channels: int = 3, num_classes: int = 10, width: int = 128, depth: int = 3,
            image_size: Union[int, tuple] = 32) -> nn.Module:
    """The ConvNet of MTT's reference code as an ``nn.Module``: ``depth`` blocks of 3x3 convolution (``width``
    channels), instance norm (GroupNorm with one group per channel, affine), ReLU and 2x2 average pooling,
    then a linear classifier. Input (B, channels, H, W) with (H, W) = ``image_size``."""
    height, width_px = (image_size, image_size) if isinstance(image_size, int) else image_size
    layers, c = [], channels
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=False),
                   nn.AvgPool2d(2)]
        c, height, width_px = width, height // 2, width_px // 2
    if height < 1 or width_px < 1:
        raise ParameterError(f"image_size {image_size} is too small for {depth} pooling layers")
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * height * width_px, num_classes))


def match(net: ModuleNet, x_syn: Tensor, y_syn: Tensor, lr: Union[Tensor, float], start: Params, target: Params,
          steps: Union[int, StepPlan], batch: Optional[int] = None, generator: Optional[torch.Generator] = None,
          unroll_mode: str = "reverse", compile: bool = False, stepper: Optional[Stepper] = None) -> UnrollResult:
    """One MTT iteration on any nn.Module: the matching loss and its gradients, in memory constant in the steps.

    Parameters
    ----------
    net : ModuleNet
        The student (any nn.Module without BatchNorm running statistics or dropout).
    x_syn : Tensor
        (N, ...) synthetic inputs.
    y_syn : Tensor
        (N,) class indices or (N, C) label logits.
    lr : Tensor or float
        The student step size (a 0-dim tensor to get its gradient).
    start, target : Tensor, dict or list
        The expert's parameters at the start and M epochs later (flat, a dict or a list; see
        :meth:`ModuleNet.flatten`).
    steps : int or StepPlan
        Student steps (minibatches of ``batch`` clips and augmentation seeds drawn from ``generator``), or a
        ready :class:`StepPlan`.
    batch : int, optional
        Clips per student step (None: all).
    generator : torch.Generator, optional
        Source of the minibatches.
    unroll_mode : str
        "reverse" (exact, constant memory in the steps) or "naive" (autograd through every step).
    compile : bool
        ``torch.compile`` the per-step functions (reverse mode; a failure falls back to eager, see
        :class:`~ddfad_fast.train.unroll.Stepper`).
    stepper : Stepper, optional
        Reuse one across calls.

    Returns
    -------
    UnrollResult
        ``loss``, ``grad_x`` like ``x_syn``, ``grad_alpha`` like ``lr``, ``grad_y`` like soft-label logits,
        ``theta_final``.

    Raises
    ------
    ParameterError
        ``net`` is not a ModuleNet, an unknown ``unroll_mode``, or parameters that do not match the net
        (shape, names or count).
    """
    if not isinstance(net, ModuleNet):
        raise ParameterError(f"match needs a ModuleNet (ModuleNet(your_module)), got {type(net).__name__}")
    if unroll_mode not in UNROLL_MODES:
        raise ParameterError(f"unroll_mode must be one of {UNROLL_MODES}, got {unroll_mode!r}")
    net.check()
    if len(x_syn) == 0:
        raise ParameterError("the synthetic set is empty")
    if y_syn.shape[0] != x_syn.shape[0]:
        raise ParameterError(f"x_syn has {x_syn.shape[0]} samples, y_syn {y_syn.shape[0]}")
    if isinstance(steps, StepPlan):
        plan = steps
    else:
        plan = make_plan(len(x_syn), batch, int(steps), generator or torch.Generator().manual_seed(0),
                         augment=net.augment is not None)
    plan = StepPlan(plan.indices.to(x_syn.device), plan.seeds)
    alpha = torch.as_tensor(lr, dtype=x_syn.dtype, device=x_syn.device).detach()
    theta0 = net.flatten(start).detach().to(device=x_syn.device, dtype=x_syn.dtype)
    theta_target = net.flatten(target).detach().to(device=x_syn.device, dtype=x_syn.dtype)
    if unroll_mode == "reverse" and stepper is None:
        stepper = Stepper(net, compile=compile)
    return unroll(net, x_syn.detach(), y_syn.detach(), alpha, theta0, theta_target, plan, unroll_mode,
                  net.augment, stepper)
