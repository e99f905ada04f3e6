"""Memory plans of every stage that trains nets, decided before anything starts: where the features of
experts and evaluation live and whether their training fits ``--max-memory``, and the unroll mode and
per-step batch of a distillation (the plans that need only configs, for features, are in
:mod:`ddfad_fast.resources`).

A training process holds what it already uses (the interpreter, torch, the data's labels), the features
when they are read into memory, and one step's working set: parameters, gradient and velocity of each
net trained at once, and the activations a forward and backward pass keep for a batch (counted by
tracing the net on the meta device, :func:`ddfad_fast.train.unroll.activation_elements_per_sample`). Batch
sizes of training are part of the recipe (they change the results), so they are never changed to fit:
the plan moves the features to a memory-mapped store, or refuses with the numbers.
"""
from __future__ import annotations

from typing import Optional, Tuple

import math
from dataclasses import dataclass, field
from typing import List

import torch
from torch import Tensor

from ..config import DistillConfig, ModelConfig
from ..errors import ParameterError, ResourceError
from ..resources import GIB, features_in_memory, physical_memory_bytes, process_rss_bytes  # noqa: F401  (re-exported)
from .models import FunctionalNet, build_model
from .unroll import UNROLL_MODES

BACKWARD_FACTOR = 3          # activations kept by the forward pass, their gradients, and the workspace of a step


def training_bytes(model: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int, batch_size: int,
                   nets: int = 1, eval_batch: int = 512) -> int:
    """One training step's working set: ``nets`` nets' parameters x 4 (value, gradient, velocity, the step's
    copy) plus the activations of a batch of ``batch_size`` for each of them x BACKWARD_FACTOR, or of an
    evaluation batch of ``eval_batch`` (forward only), whichever is larger."""
    net = build_model(model, tuple(in_shape), num_classes)
    act = activation_elements_per_sample(net)
    step = nets * (4 * net.num_params + BACKWARD_FACTOR * batch_size * act)
    return 4 * max(step, eval_batch * act)


def training_reserve(*stages: Tuple[ModelConfig, int, int]):
    """A ``reserve(in_shape, num_classes)`` for :func:`ddfad_fast.data.load_feature_split`: the largest
    :func:`training_bytes` of ``stages``, each (model, batch size, nets trained at once)."""
    def reserve(in_shape: Tuple[int, int, int], num_classes: int) -> int:
        return max(training_bytes(model, in_shape, num_classes, batch, nets) for model, batch, nets in stages)
    return reserve


# ----------------------------------------------------------------------------- activations and the unroll

def activation_elements_per_sample(net: FunctionalNet) -> int:
    """Elements of every non-view intermediate of one forward pass, per input sample.

    Traced on the meta device (no memory, no compute): the count at batch 2 minus batch 1.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view:
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, Tensor):
                        self.total += t.numel()
            return out

    counts = []
    theta = torch.zeros(net.num_params, device="meta")
    for batch in (1, 2):
        with _Count() as counter:
            net.forward(theta, torch.zeros(batch, *net.in_shape, device="meta"))
        counts.append(counter.total)
    return max(counts[1] - counts[0], 1)


# Bytes of one unroll per (activation element per sample) x (batch) x (dtype bytes), from peak RSS
# measured on CPU (bench/results/mtt_memory.json: ConvNet width 128 depth 3 on (3, 20, 101), batch 100
# and 500, float32): the naive unroll keeps 1.45-1.5 per step (its double-backward graph); one reverse
# step (forward + double backward of a single step) peaks at 1.7-2.4 (compiled 1.7-2.1, eager 2.0-2.4).
NAIVE_PER_STEP_FACTOR = 1.6


NAIVE_EXTRA_FACTOR = 1.0


REVERSE_STEP_FACTOR = 2.5


def estimate_unroll_bytes(net: FunctionalNet, batch: int, steps: int, mode: str,
                          dtype: torch.dtype = torch.float32, activation_elements: Optional[int] = None) -> int:
    """Estimated peak bytes of one :func:`unroll` call beyond the data it is given.

    ``A`` = :func:`activation_elements_per_sample`, ``e`` = bytes per element, ``b`` = ``batch``:
    naive ``(1.6 N + 1.0) A b e``; reverse ``2.5 A b e + (N + 1) P e`` (the stored parameters).
    """
    if mode not in UNROLL_MODES:
        raise ParameterError(f"unroll mode must be one of {UNROLL_MODES}, got {mode!r}")
    act = activation_elements if activation_elements is not None else activation_elements_per_sample(net)
    elem = torch.empty((), dtype=dtype).element_size()
    per_step = act * batch * elem
    if mode == "naive":
        return int((NAIVE_PER_STEP_FACTOR * steps + NAIVE_EXTRA_FACTOR) * per_step)
    return int(REVERSE_STEP_FACTOR * per_step + (steps + 1) * net.num_params * elem)


# ----------------------------------------------------------------------------- distillation

@dataclass
class MemoryPlan:
    """The unroll mode and per-step batch a run uses, and its estimated peak (bytes)."""

    unroll: str
    batch_syn: Optional[int]
    estimate_bytes: int
    baseline_bytes: int
    changed: List[str] = field(default_factory=list)
    requested: dict = field(default_factory=dict)     # the settings it was made for: unroll, batch_syn, max_memory_gb

    def to_payload(self) -> dict:
        return {"unroll": self.unroll, "batch_syn": self.batch_syn, "estimate_bytes": int(self.estimate_bytes),
                "baseline_bytes": int(self.baseline_bytes), "changed": list(self.changed),
                "requested": dict(self.requested)}


def requested_settings(config: DistillConfig) -> dict:
    """The settings a memory plan answers: a stored plan is reused only for the same ones."""
    return {"unroll": config.unroll, "batch_syn": config.batch_syn, "max_memory_gb": config.max_memory_gb}


def _process_bytes(device: torch.device) -> int:
    """Memory already in use: the resident set on CPU, the allocated bytes on a GPU."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return process_rss_bytes()


def plan_memory(net: FunctionalNet, n_syn: int, config: DistillConfig, dtype: torch.dtype = torch.float32,
                device: torch.device = torch.device("cpu")) -> MemoryPlan:
    """The (unroll, batch_syn) to run with, fitting ``config.max_memory_gb`` when it is set.

    The estimate is the memory already in use plus the synthetic set, its gradient and momentum
    (3 copies) plus :func:`ddfad_fast.train.unroll.estimate_unroll_bytes`. Tries the configured mode and
    batch, then the reverse mode, then halves the batch down to 1. Raises ResourceError naming the
    need and the limit when nothing fits.
    """
    elem = torch.empty((), dtype=dtype).element_size()
    act = activation_elements_per_sample(net)
    baseline = _process_bytes(device) + 3 * n_syn * math.prod(net.in_shape) * elem

    def need(mode: str, batch: Optional[int]) -> int:
        b = n_syn if batch is None else min(batch, n_syn)
        return baseline + estimate_unroll_bytes(net, b, config.syn_steps, mode, dtype, act)

    first = need(config.unroll, config.batch_syn)
    if config.max_memory_gb is None:
        have = physical_memory_bytes() if torch.device(device).type == "cpu" else 0
        if not have or first <= have:
            return MemoryPlan(config.unroll, config.batch_syn, first, baseline, requested=requested_settings(config))
        limit = have                    # the settings would not fit this machine (e.g. --syn-steps 1e8): plan for it
    else:
        limit = int(config.max_memory_gb * GIB)
    candidates: List[Tuple[str, Optional[int]]] = [(config.unroll, config.batch_syn)]
    if config.unroll != "reverse":
        candidates.append(("reverse", config.batch_syn))
    batch = n_syn if config.batch_syn is None else min(config.batch_syn, n_syn)
    while batch > 1:
        batch = batch // 2
        candidates.append(("reverse", batch))
    for mode, b in candidates:
        estimate = need(mode, b)
        if estimate <= limit:
            changed = []
            if mode != config.unroll:
                changed.append(f"unroll {config.unroll} -> {mode}")
            if b != config.batch_syn:
                changed.append(f"batch_syn {config.batch_syn} -> {b}")
            return MemoryPlan(mode, b, estimate, baseline, changed, requested_settings(config))
    smallest = need("reverse", 1)
    raise ResourceError(
        f"distillation needs about {first / GIB:.2f} GiB ({config.unroll} unroll, batch "
        f"{config.batch_syn or n_syn}, {config.syn_steps} steps) and at least {smallest / GIB:.2f} GiB with the "
        f"reverse unroll at batch 1 ({baseline / GIB:.2f} GiB of it already in use), but "
        + (f"max_memory_gb is {config.max_memory_gb:g} GiB" if config.max_memory_gb is not None else
           f"this machine has {limit / GIB:.1f} GiB; lower --syn-steps or the width"))
