"""Several processes through PyTorch's own distributed engine (``torch.distributed``, started by ``torchrun``).

``torchrun --nproc-per-node K -m ddfad_fast.cli COMMAND ...`` starts K copies of a command; torchrun sets
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous (MASTER_ADDR / MASTER_PORT) in each one's environment.
The CLI calls :func:`init` once before the command runs: the process group uses ``nccl`` when the
command's device is a GPU and ``gloo`` otherwise. Without those variables (a plain ``ddfad`` call) every
function here answers for a single process (rank 0 of 1) and nothing is initialised.

Commands that split work: ``features`` (ranks write disjoint shards; rank 0 writes the index),
``experts`` (ranks train disjoint experts), ``distill`` (each rank unrolls its own trajectories; the
gradients are averaged with an all-reduce).
"""
from __future__ import annotations

import datetime
import importlib
import os
import pickle
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist

from .errors import ParameterError

#: the sub-commands that run under torchrun; the others refuse (one process does their whole work)
DISTRIBUTED_COMMANDS = ("features", "experts", "distill")


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's rank in the initialised process group (0 when there is none)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes of the initialised process group (1 when there is none)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, which writes every shared file (indexes, reports, checkpoints)."""
    return rank() == 0


def local_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` for this process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher, so the K
    processes of a node each take their own GPU; other devices are returned unchanged."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init(command: str, device: Optional[torch.device] = None, timeout_s: float = 1800.0) -> None:
    """Join the process group of a torchrun launch (no-op for a single process).

    Backend ``nccl`` when ``device`` is a CUDA device (its index is made the current device), else ``gloo``.
    A command that does not split its work is refused with a ParameterError naming the ones that do.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    if command not in DISTRIBUTED_COMMANDS:
        raise ParameterError(f"ddfad {command} runs in one process; under torchrun only "
                             f"{', '.join(DISTRIBUTED_COMMANDS)} split their work (WORLD_SIZE={os.environ['WORLD_SIZE']})")
    if not dist.is_available():
        raise ParameterError("this torch build has no torch.distributed; run without torchrun")
    backend = "gloo"
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
    # torch._dynamo (imported by torch.compile and torch.func.grad) keeps references to a process group that
    # exists when it is first imported, so destroy_process_group would leave the group and its worker threads
    # alive; a gloo worker that releases its last collective's tensors while the interpreter shuts down then
    # aborts the process (SIGABRT after a finished run, about 1 launch in 30 on a 2-core host). Imported
    # first, it holds none and shutdown() joins the workers.
    importlib.import_module("torch._dynamo")
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


def shutdown(wait: bool = True) -> None:
    """Leave the process group; ``wait``: after a barrier, so no rank exits while others still talk to it
    (a rank that failed leaves at once: the launcher then stops the others). A group made by :func:`init`
    is destroyed here, its worker threads joined before the interpreter exits."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (no-op for a single process); returns it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; unchanged for a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def collective_device() -> torch.device:
    """Where tensors for collectives must live: the current GPU under nccl, else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_ok(ok: bool) -> bool:
    """True when ``ok`` holds on every rank: ranks that failed tell the others so none waits forever at a
    later collective."""
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64, device=collective_device())
    all_reduce_sum_(flag)
    return int(flag) == 0


def together(fn: Callable[[], Any], run: bool = True) -> Any:
    """``fn()`` on this rank when ``run`` (None otherwise); when it raises on any rank, every rank raises, so
    none waits forever at a later collective: a failed rank its own error, the others rank 0's error when
    rank 0 failed, else a DDFADError. A single process just calls ``fn``."""
    from .errors import DDFADError
    if world_size() == 1:
        return fn() if run else None
    value, error = None, None
    if run:
        try:
            value = fn()
        except Exception as exc:      # noqa: BLE001 - told to the other ranks, then raised
            error = exc
    if all_ok(error is None):
        return value
    shared = None
    if is_main() and error is not None:
        try:
            shared = pickle.loads(pickle.dumps(error))
        except Exception:             # noqa: BLE001 - an exception that does not pickle travels as text
            shared = DDFADError(f"{type(error).__name__}: {error}")
    shared = broadcast_object(shared)
    if error is not None:
        raise error
    if shared is not None:
        raise shared
    raise DDFADError("stopped: another process failed (its error is in its own output)")
