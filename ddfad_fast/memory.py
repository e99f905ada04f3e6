"""Memory plans for the stages that train nets (experts, evaluation): where the features live and whether
the training fits ``--max-memory``, decided before anything starts.

A training process holds what it already uses (the interpreter, torch, the data's labels), the features
when they are read into memory, and one step's working set: parameters, gradient and velocity of each
net trained at once, and the activations a forward and backward pass keep for a batch (counted by
tracing the net on the meta device, :func:`ddfad_fast.unroll.activation_elements_per_sample`). Batch
sizes of training are part of the recipe (they change the results), so they are never changed to fit:
the plan moves the features to a memory-mapped store, or refuses with the numbers.
"""
from __future__ import annotations

from typing import Optional, Tuple

from .config import ModelConfig
from .errors import ResourceError

GIB = 2 ** 30
BACKWARD_FACTOR = 3          # activations kept by the forward pass, their gradients, and the workspace of a step


def process_rss_bytes() -> int:
    """Memory this process holds now that the kernel cannot take back: its anonymous and shared-memory
    resident pages (RssAnon + RssShmem; VmRSS where those are not reported). File-backed pages, such
    as the memory-mapped shards of a store being read, are page cache the kernel reclaims under
    pressure, so they do not count against a memory limit."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssShmem"):
                    fields[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    if "RssAnon" in fields:
        return fields["RssAnon"] + fields.get("RssShmem", 0)
    return fields.get("VmRSS", 0)


def training_bytes(model: ModelConfig, in_shape: Tuple[int, int, int], num_classes: int, batch_size: int,
                   nets: int = 1, eval_batch: int = 512) -> int:
    """One training step's working set: ``nets`` nets' parameters x 4 (value, gradient, velocity, the step's
    copy) plus the activations of a batch of ``batch_size`` for each of them x BACKWARD_FACTOR, or of an
    evaluation batch of ``eval_batch`` (forward only), whichever is larger."""
    from .models import build_model
    from .unroll import activation_elements_per_sample
    net = build_model(model, tuple(in_shape), num_classes)
    act = activation_elements_per_sample(net)
    step = nets * (4 * net.num_params + BACKWARD_FACTOR * batch_size * act)
    return 4 * max(step, eval_batch * act)


def features_in_memory(features_bytes: int, reserve_bytes: int, max_memory_gb: Optional[float], in_use: int,
                       what: str = "training") -> bool:
    """True when the features (``features_bytes``) fit in memory beside ``reserve_bytes`` and the ``in_use``
    bytes of the process under ``max_memory_gb`` (None: no limit, True); False when only the reserve fits
    (the features stay in their store); ResourceError with the numbers when even that does not fit."""
    if max_memory_gb is None:
        return True
    limit = max_memory_gb * GIB
    if in_use + reserve_bytes + features_bytes <= limit:
        return True
    if in_use + reserve_bytes <= limit:
        return False
    raise ResourceError(f"{what} needs about {(in_use + reserve_bytes) / GIB:.2f} GB with the features read from "
                        f"their store ({in_use / GIB:.2f} GB already in use, {reserve_bytes / GIB:.2f} GB for a "
                        f"step), over --max-memory {max_memory_gb:g} GB; lower the batch size or the width, or "
                        f"raise --max-memory")


def training_reserve(*stages: Tuple[ModelConfig, int, int]):
    """A ``reserve(in_shape, num_classes)`` for :func:`ddfad_fast.data.load_feature_split`: the largest
    :func:`training_bytes` of ``stages``, each (model, batch size, nets trained at once)."""
    def reserve(in_shape: Tuple[int, int, int], num_classes: int) -> int:
        return max(training_bytes(model, in_shape, num_classes, batch, nets) for model, batch, nets in stages)
    return reserve
