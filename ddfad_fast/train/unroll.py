"""The functional student unroll of MTT and its gradient w.r.t. the synthetic data and the step size.

A student starts at expert parameters ``theta_0`` (P,) and takes N SGD steps on synthetic minibatches,

    theta_{i+1} = theta_i - alpha * g_i,   g_i = grad_theta CE(net(theta_i, aug_i(X[b_i])), y[b_i]),

and the trajectory-matching loss is ``L = ||theta_N - target||^2 / ||theta_0 - target||^2``. Two ways
to get dL/dX and dL/dalpha (docs/architecture.md section 6):

* ``"naive"``: one autograd graph through all N steps (``create_graph=True``); memory grows
  linearly in N. It is the reference.
* ``"reverse"``: exact reverse mode in constant memory (in N). The forward sweep keeps no graph and
  stores only theta_0..theta_N (N * P numbers); the backward sweep rebuilds one step at a time: with the
  adjoint a = dL/dtheta_{i+1}, one vector-Jacobian product of g_i . a w.r.t. (theta_i, X[b_i]) gives the
  Hessian-vector product H_i a and the data gradient, then a <- a - alpha H_i a,
  dL/dalpha -= g_i . a and dL/dX[b_i] -= alpha d(g_i . a)/dX[b_i]. The Hessian term is kept.

Labels are class indices (N_syn,) int64, or learnable logits (N_syn, C) float whose softmax is the
target of the cross-entropy ("soft labels"); then dL/dlogits comes out of the same sweeps as dL/dX.

Step ``i`` is fully described by its minibatch indices ``b_i`` and augmentation seed (a
:class:`StepPlan`), so the reverse sweep replays it exactly. The per-step functions live in a
:class:`Stepper`, compiled with ``torch.compile`` (one graph each, no breaks) or eager; a failed
compilation falls back to eager and says why in :attr:`Stepper.compile_error`.

The augmentation (:class:`Augment`) is differentiable: a circular time shift per clip (a gather) and a
time band and a frequency band set to zero (a multiplicative 0/1 mask), shared by the three FD-MFCC
channels. Its random draws come from the step's seed, outside the compiled region.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import Augment
from ..errors import ParameterError
from .models import FunctionalNet

UNROLL_MODES = ("naive", "reverse")
RECOMPILE_LIMIT = 64
AugTensors = Optional[Tuple[Tensor, Tensor]]     # (time index (B, 1, F, T) int64, mask (B, 1, F, T))


# ----------------------------------------------------------------------------- augmentation

def augment_tensors(aug: Augment, seed: int, batch: int, n_freq: int, n_time: int,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor]:
    """The random draws of one step: time gather index (B, 1, F, T) int64 and 0/1 mask (B, 1, F, T).

    Deterministic in ``seed``: the reverse sweep redraws exactly what the forward sweep used. A band
    covers at most half of its axis, so no clip is ever masked whole (an all-zero input makes instance
    norm divide 0 by sqrt(eps), where compiled and eager rounding part ways).
    """
    gen = torch.Generator().manual_seed(int(seed))
    shift = torch.randint(-aug.max_shift, aug.max_shift + 1, (batch, 1, 1, 1), generator=gen)
    t = torch.arange(n_time).view(1, 1, 1, n_time)
    index = ((t - shift) % n_time).expand(batch, 1, n_freq, n_time).contiguous()
    mask = torch.ones(batch, 1, n_freq, n_time)
    tw = torch.randint(0, min(aug.time_mask, n_time // 2) + 1, (batch,), generator=gen)
    t0 = (torch.rand(batch, generator=gen) * (n_time - tw + 1)).long()
    fw = torch.randint(0, min(aug.freq_mask, n_freq // 2) + 1, (batch,), generator=gen)
    f0 = (torch.rand(batch, generator=gen) * (n_freq - fw + 1)).long()
    in_t = (t.view(1, -1) >= t0[:, None]) & (t.view(1, -1) < (t0 + tw)[:, None])          # (B, T)
    f = torch.arange(n_freq).view(1, -1)
    in_f = (f >= f0[:, None]) & (f < (f0 + fw)[:, None])                                 # (B, F)
    mask[in_t[:, None, None, :].expand(batch, 1, n_freq, n_time)] = 0.0
    mask[in_f[:, None, :, None].expand(batch, 1, n_freq, n_time)] = 0.0
    return index.to(device), mask.to(device=device, dtype=dtype)


def apply_augment(x: Tensor, index: Tensor, mask: Tensor) -> Tensor:
    """``x`` (B, C, F, T) shifted in time by ``index`` and multiplied by ``mask`` (both (B, 1, F, T))."""
    return torch.gather(x, 3, index.expand_as(x)) * mask


# ----------------------------------------------------------------------------- step plans

@dataclass
class StepPlan:
    """What the N student steps of one iteration see: ``indices`` (N, b) int64, ``seeds`` (N,) int64 or None."""

    indices: Tensor
    seeds: Optional[Tensor] = None

    @property
    def steps(self) -> int:
        return int(self.indices.shape[0])


def make_plan(n_syn: int, batch: Optional[int], steps: int, generator: torch.Generator,
              augment: bool) -> StepPlan:
    """Minibatches of ``batch`` (None = all ``n_syn``) for ``steps`` steps, drawn from ``generator``.

    Batches are consecutive chunks of seeded permutations (a new permutation when one is used up;
    a last partial chunk is skipped so every step has the same shape). Augmentation seeds are drawn
    after the indices when ``augment``.
    """
    if steps < 1:
        raise ParameterError(f"syn_steps must be >= 1, got {steps}")
    if batch is None or batch >= n_syn:
        indices = torch.arange(n_syn).expand(steps, n_syn).contiguous()
    else:
        if batch < 1:
            raise ParameterError(f"batch_syn must be >= 1 or None, got {batch}")
        chunks: List[Tensor] = []
        per_perm = n_syn // batch
        while len(chunks) < steps:
            perm = torch.randperm(n_syn, generator=generator)
            chunks.extend(perm[k * batch:(k + 1) * batch] for k in range(per_perm))
        indices = torch.stack(chunks[:steps])
    seeds = torch.randint(0, 2 ** 62, (steps,), generator=generator) if augment else None
    return StepPlan(indices, seeds)


# ----------------------------------------------------------------------------- per-step functions

def soft_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy () of ``logits`` (b, C) against ``labels``: class indices (b,) int64, or label
    logits (b, C) float whose softmax is the target distribution."""
    if labels.is_floating_point():
        return F.cross_entropy(logits, labels.softmax(-1))
    return F.cross_entropy(logits, labels)


def _augmented(net: FunctionalNet, xb: Tensor, index: Optional[Tensor], mask: Optional[Tensor]) -> Tensor:
    """``xb`` augmented for one step: the FD-MFCC augmentation (index and mask tensors), or, where the net
    brings its own (``net.augment(xb, seed)``, :class:`ddfad_fast.train.mtt.ModuleNet`), that, from the step's seed."""
    if index is None:
        return xb
    return apply_augment(xb, index, mask) if mask is not None else net.augment(xb, index)


def _batch_loss(net: FunctionalNet, theta: Tensor, xb: Tensor, yb: Tensor, index: Optional[Tensor],
                mask: Optional[Tensor]) -> Tensor:
    """The loss () of the (augmented) batch ``xb`` under ``theta`` (P,): the net's ``loss_fn`` when it has
    one, else the mean cross-entropy (:func:`soft_cross_entropy`)."""
    loss_fn = getattr(net, "loss_fn", None) or soft_cross_entropy
    return loss_fn(net.forward(theta, _augmented(net, xb, index, mask)), yb)


def functional_grad_and_loss(net: FunctionalNet) -> Callable:
    """``(theta, xb, yb, index=None, mask=None) -> (dL/dtheta, L)`` of one (augmented) batch, written with
    torch.func: compilable, and vmappable over nets (ensembles)."""
    def loss_with_aux(theta: Tensor, xb: Tensor, yb: Tensor, index: Optional[Tensor] = None,
                      mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        loss = _batch_loss(net, theta, xb, yb, index, mask)
        return loss, loss.detach()

    return torch.func.grad(loss_with_aux, has_aux=True)


def _compilable_step_functions(net: FunctionalNet) -> Tuple[Callable, Callable, Callable]:
    """(step, reverse, grad_and_loss) written with torch.func, so that torch.compile captures each in one graph."""
    grad_loss = torch.func.grad(lambda theta, xb, yb, index, mask: _batch_loss(net, theta, xb, yb, index, mask))
    grad_and_loss = functional_grad_and_loss(net)

    def step(theta: Tensor, xb: Tensor, yb: Tensor, alpha: Tensor, index: Optional[Tensor],
             mask: Optional[Tensor]) -> Tensor:
        return theta - alpha * grad_loss(theta, xb, yb, index, mask)

    def reverse(theta: Tensor, xb: Tensor, yb: Tensor, index: Optional[Tensor], mask: Optional[Tensor],
                adjoint: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
        def g_dot_a(theta_: Tensor, xb_: Tensor, yb_: Tensor) -> Tuple[Tensor, Tensor]:
            gda = (grad_loss(theta_, xb_, yb_, index, mask) * adjoint).sum()
            return gda, gda
        soft = yb.is_floating_point()
        grads, gda = torch.func.grad(g_dot_a, argnums=(0, 1, 2) if soft else (0, 1), has_aux=True)(theta, xb, yb)
        return grads[0], grads[1], grads[2] if soft else None, gda

    return step, reverse, grad_and_loss


def _eager_step_functions(net: FunctionalNet) -> Tuple[Callable, Callable, Callable]:
    """(step, reverse) with torch.autograd: in eager mode they keep about half the memory of torch.func's."""

    def step(theta: Tensor, xb: Tensor, yb: Tensor, alpha: Tensor, index: Optional[Tensor],
             mask: Optional[Tensor]) -> Tensor:
        with torch.enable_grad():
            th = theta.detach().requires_grad_()
            g, = torch.autograd.grad(_batch_loss(net, th, xb, yb, index, mask), th)
        return theta - alpha * g

    def reverse(theta: Tensor, xb: Tensor, yb: Tensor, index: Optional[Tensor], mask: Optional[Tensor],
                adjoint: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
        soft = yb.is_floating_point()
        with torch.enable_grad():
            th, xb = theta.detach().requires_grad_(), xb.detach().requires_grad_()
            yb = yb.detach().requires_grad_() if soft else yb
            g, = torch.autograd.grad(_batch_loss(net, th, xb, yb, index, mask), th, create_graph=True)
            gda = (g * adjoint).sum()
            grads = torch.autograd.grad(gda, (th, xb, yb) if soft else (th, xb))
        return grads[0], grads[1], grads[2] if soft else None, gda.detach()

    def grad_and_loss(theta: Tensor, xb: Tensor, yb: Tensor, index: Optional[Tensor],
                      mask: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        with torch.enable_grad():
            th = theta.detach().requires_grad_()
            loss = _batch_loss(net, th, xb, yb, index, mask)
            g, = torch.autograd.grad(loss, th)
        return g, loss.detach()

    return step, reverse, grad_and_loss


def compile_errors() -> Tuple[type, ...]:
    """The exceptions that mean "torch.compile could not compile this" (dynamo tracing, inductor lowering and
    code generation, a missing C++ compiler or Triton, the recompile limit). Anything else raised by a
    compiled step, an out-of-memory error or an error in the step's own code, is the step's error."""
    import torch._dynamo.exc as dynamo_exc
    errors: List[type] = [dynamo_exc.TorchDynamoException, dynamo_exc.FailOnRecompileLimitHit]
    try:
        import torch._inductor.exc as inductor_exc
        errors += [inductor_exc.CppCompileError, inductor_exc.InvalidCxxCompiler, inductor_exc.OperatorIssue]
    except ImportError:             # inductor absent from this build: nothing of it can be raised
        pass
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of a compile error, naming the wrapped error of a failed backend."""
    inner = getattr(exc, "inner_exception", None)
    if inner is not None:
        return f"{type(exc).__name__}: {_first_line(inner)}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class Stepper:
    """The per-step functions of one net: ``step`` (theta_i -> theta_{i+1}, no graph kept),
    ``reverse`` (one vector-Jacobian product of g_i . a) and ``grad_and_loss`` (one training step's
    gradient and loss: what expert and evaluation training run).

    ``step(theta (P,), xb (b, 3, F, T), yb (b,) or (b, C), alpha (), aug) -> (P,)``;
    ``reverse(theta, xb, yb, aug, adjoint (P,)) -> (H a (P,), d(g . a)/dxb (b, 3, F, T), d(g . a)/dyb (b, C)
    for soft labels else None, g . a ())``; ``grad_and_loss(theta, xb, yb, aug) -> (dL/dtheta (P,), L ())``.

    ``compile=True`` wraps the torch.func versions in ``torch.compile(fullgraph=True, dynamic=False)``
    (one graph each, one compilation per input shape and dtype); if compilation is unavailable or fails
    on first use, the eager (torch.autograd) versions take over, :attr:`compiled` becomes False and
    :attr:`compile_error` says why. Compiling raises dynamo's recompile limit to at least
    ``RECOMPILE_LIMIT`` (every net and batch shape of a run is one more compilation of the same code),
    and hitting it is an error that falls back to eager loudly rather than silently.
    """

    def __init__(self, net: FunctionalNet, compile: bool = False) -> None:
        self.net = net
        self._eager = _eager_step_functions(net)
        self.compile_error: Optional[str] = None
        self.compiled = False
        self._fns = self._eager
        if compile:
            try:
                dynamo_config = torch._dynamo.config
                dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
                dynamo_config.fail_on_recompile_limit_hit = True
                self._fns = tuple(torch.compile(f, fullgraph=True, dynamic=False)
                                  for f in _compilable_step_functions(net))
                self.compiled = True
            except Exception as exc:  # torch.compile missing or unsupported on this platform
                self.compile_error = f"{type(exc).__name__}: {exc}"

    def _call(self, which: int, *args):
        if not self.compiled:
            return self._eager[which](*args)
        try:
            return self._fns[which](*args)
        except compile_errors() as exc:  # dynamo/inductor could not compile the step: run eager from now on
            if isinstance(exc, torch.OutOfMemoryError):
                raise
            self.compile_error = _first_line(exc)
            self.compiled = False
            return self._eager[which](*args)     # an error of the step itself is raised again here, eagerly

    def step(self, theta: Tensor, xb: Tensor, yb: Tensor, alpha: Tensor, aug: AugTensors) -> Tensor:
        index, mask = aug if aug is not None else (None, None)
        return self._call(0, theta, xb, yb, alpha, index, mask)

    def reverse(self, theta: Tensor, xb: Tensor, yb: Tensor, aug: AugTensors,
                adjoint: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
        index, mask = aug if aug is not None else (None, None)
        return self._call(1, theta, xb, yb, index, mask, adjoint)

    def grad_and_loss(self, theta: Tensor, xb: Tensor, yb: Tensor, aug: AugTensors) -> Tuple[Tensor, Tensor]:
        index, mask = aug if aug is not None else (None, None)
        return self._call(2, theta, xb, yb, index, mask)

    @property
    def mode(self) -> str:
        return "compiled" if self.compiled else "eager"


# ----------------------------------------------------------------------------- the unroll

@dataclass
class UnrollResult:
    """Loss () and its gradients: ``grad_x`` like the synthetic data (N_syn, 3, F, T), ``grad_alpha`` (),
    ``grad_y`` like soft-label logits (N_syn, C) (None for class-index labels)."""

    loss: Tensor
    grad_x: Tensor
    grad_alpha: Tensor
    theta_final: Tensor
    grad_y: Optional[Tensor] = None


def _step_aug(plan: StepPlan, i: int, augment: Optional[Augment], xb: Tensor) -> AugTensors:
    """Step ``i``'s augmentation: an :class:`Augment`'s (index, mask) tensors; for a net's own augmentation
    (``augment`` not an Augment) the step's seed as a 0-dim int64 tensor and no mask."""
    if augment is None or plan.seeds is None:
        return None
    if not isinstance(augment, Augment):
        return plan.seeds[i].to(xb.device), None
    b, _, n_freq, n_time = xb.shape
    return augment_tensors(augment, int(plan.seeds[i]), b, n_freq, n_time, xb.dtype, xb.device)


def _check_inputs(net: FunctionalNet, x: Tensor, y: Tensor, theta0: Tensor, target: Tensor, plan: StepPlan) -> None:
    in_shape = getattr(net, "in_shape", None)                   # None: any input shape (ddfad_fast.train.mtt.ModuleNet)
    if in_shape is not None and (x.dim() != len(in_shape) + 1 or tuple(x.shape[1:]) != tuple(in_shape)):
        raise ParameterError(f"synthetic data must have shape (N, {', '.join(map(str, in_shape))}), "
                             f"got {tuple(x.shape)}")
    if y.is_floating_point():
        classes = getattr(net, "num_classes", None) or (y.shape[-1] if y.dim() == 2 else -1)
        if y.shape != (x.shape[0], classes) or y.dtype != x.dtype:
            raise ParameterError(f"soft-label logits must have shape ({x.shape[0]}, {classes}) and dtype "
                                 f"{x.dtype}, got {tuple(y.shape)} {y.dtype}")
    elif y.shape != (x.shape[0],):
        raise ParameterError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    for name, t in (("theta_start", theta0), ("theta_target", target)):
        if t.shape != (net.num_params,):
            raise ParameterError(f"{name} must have shape ({net.num_params},), got {tuple(t.shape)}")
    if plan.indices.dim() != 2 or plan.steps < 1:
        raise ParameterError(f"plan indices must be (steps >= 1, batch), got {tuple(plan.indices.shape)}")


def _loss_and_adjoint(theta_n: Tensor, theta0: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
    denom = ((theta0 - target) ** 2).sum()
    diff = theta_n - target
    return (diff ** 2).sum() / denom, 2.0 * diff / denom


def unroll_naive(net: FunctionalNet, x: Tensor, y: Tensor, alpha: Tensor, theta0: Tensor, target: Tensor,
                 plan: StepPlan, augment: Optional[Augment] = None) -> UnrollResult:
    """Reference: autograd through all N steps (memory linear in N)."""
    _check_inputs(net, x, y, theta0, target, plan)
    soft = y.is_floating_point()
    x = x.detach().requires_grad_()
    y = y.detach().requires_grad_() if soft else y
    alpha = alpha.detach().clone().requires_grad_()
    theta = theta0.detach().requires_grad_()
    for i in range(plan.steps):
        idx = plan.indices[i]
        xb = x[idx]
        index, mask = _step_aug(plan, i, augment, xb) or (None, None)
        loss_i = _batch_loss(net, theta, xb, y[idx], index, mask)
        g, = torch.autograd.grad(loss_i, theta, create_graph=True)
        theta = theta - alpha * g
    loss = ((theta - target) ** 2).sum() / ((theta0 - target) ** 2).sum()
    grads = torch.autograd.grad(loss, (x, alpha, y) if soft else (x, alpha))
    return UnrollResult(loss.detach(), grads[0], grads[1], theta.detach(), grads[2] if soft else None)


@torch.no_grad()
def unroll_reverse(net: FunctionalNet, x: Tensor, y: Tensor, alpha: Tensor, theta0: Tensor, target: Tensor,
                   plan: StepPlan, augment: Optional[Augment] = None,
                   stepper: Optional[Stepper] = None) -> UnrollResult:
    """Exact reverse sweep in constant memory (in N): stores theta_0..theta_N only."""
    _check_inputs(net, x, y, theta0, target, plan)
    stepper = stepper or Stepper(net)
    x, y, alpha = x.detach(), y.detach(), alpha.detach()
    thetas = [theta0.detach()]
    for i in range(plan.steps):
        idx = plan.indices[i]
        xb = x[idx]
        thetas.append(stepper.step(thetas[-1], xb, y[idx], alpha, _step_aug(plan, i, augment, xb)))
    theta_n = thetas[-1]
    loss, adjoint = _loss_and_adjoint(theta_n, thetas[0], target)
    grad_x = torch.zeros_like(x)
    grad_y = torch.zeros_like(y) if y.is_floating_point() else None
    grad_alpha = torch.zeros((), dtype=x.dtype, device=x.device)
    for i in reversed(range(plan.steps)):
        thetas.pop()                                  # theta_{i+1} is no longer needed
        idx = plan.indices[i]
        xb = x[idx]
        hv, dx, dy, gda = stepper.reverse(thetas[i], xb, y[idx], _step_aug(plan, i, augment, xb), adjoint)
        grad_alpha -= gda
        grad_x.index_add_(0, idx, dx, alpha=-float(alpha))
        if grad_y is not None:
            grad_y.index_add_(0, idx, dy, alpha=-float(alpha))
        adjoint = adjoint - alpha * hv
    return UnrollResult(loss, grad_x, grad_alpha, theta_n, grad_y)


def unroll(net: FunctionalNet, x: Tensor, y: Tensor, alpha: Tensor, theta0: Tensor, target: Tensor,
           plan: StepPlan, mode: str = "reverse", augment: Optional[Augment] = None,
           stepper: Optional[Stepper] = None) -> UnrollResult:
    """Loss and gradients of one MTT iteration by ``mode`` ("naive" or "reverse").

    ``x`` (N_syn, 3, F, T), ``y`` (N_syn,) int64 or soft-label logits (N_syn, C), ``alpha`` () the student step size, ``theta0`` and
    ``target`` (P,) (theta*_t and theta*_{t+M}), ``plan`` the steps' batches and augmentation seeds.
    All float tensors share one dtype (float32 or float64).
    """
    if mode == "naive":
        return unroll_naive(net, x, y, alpha, theta0, target, plan, augment)
    if mode == "reverse":
        return unroll_reverse(net, x, y, alpha, theta0, target, plan, augment, stepper)
    raise ParameterError(f"unroll mode must be one of {UNROLL_MODES}, got {mode!r}")


# ----------------------------------------------------------------------------- memory estimate

