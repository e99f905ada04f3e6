"""The backend dispatcher: op name -> implementations.

Backends: ``reference`` (plain torch, the oracle), ``cpu`` (C++ extension ddfad_fast._C),
``numba``, ``triton``, ``cuda`` (CUDA sources of ddfad_fast._C).

Order of choice (docs/architecture.md section 2): CUDA tensor -> the GPU backends in the op's preferred order
-> reference; CPU tensor -> ``cpu`` or ``numba`` in the op's preferred order -> reference.
``DDFAD_BACKEND=reference|triton|cuda|cpu|numba`` forces one; if it cannot run the op on that
device a :class:`BackendUnavailableError` is raised (never a silent fallback when forced).

Providers register themselves with :func:`register` when their module is imported; the modules are
imported lazily on the first :func:`get` so that ``import ddfad_fast`` stays cheap.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from .errors import BackendUnavailableError, ParameterError

BACKENDS = ("reference", "cpu", "numba", "triton", "cuda")
GPU_BACKENDS = ("triton", "cuda")
CPU_BACKENDS = ("cpu", "numba")

# Modules that call register() at import. A module that fails to import (missing optional
# dependency, extension not built) simply contributes nothing.
_PROVIDER_MODULES = (
    "ddfad_fast.reference",
    "ddfad_fast.cpu_backend",
    "ddfad_fast.gpu_backend",
)


@dataclass
class _Impl:
    fn: Callable
    devices: Tuple[str, ...]          # device types it runs on: "cpu", "cuda"
    available: Callable[[], bool]
    dtypes: Tuple[torch.dtype, ...]   # input dtypes it accepts


_REGISTRY: Dict[str, Dict[str, _Impl]] = {}
# preferred order among the fast backends, per op and device type (set from benchmark results)
_PREFERENCE: Dict[Tuple[str, str], Tuple[str, ...]] = {}
_loaded = False
_import_errors: Dict[str, str] = {}


def register(op: str, backend: str, fn: Callable, devices: Tuple[str, ...],
             available: Callable[[], bool] = lambda: True,
             dtypes: Tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> None:
    """Register ``fn`` as the ``backend`` implementation of ``op`` for the given device types and input dtypes."""
    if backend not in BACKENDS:
        raise ParameterError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    _REGISTRY.setdefault(op, {})[backend] = _Impl(fn, tuple(devices), available, tuple(dtypes))


def set_preference(op: str, device_type: str, order: Tuple[str, ...]) -> None:
    """Set which fast backends to try first for ``op`` on ``device_type`` (e.g. from a benchmark)."""
    _PREFERENCE[(op, device_type)] = tuple(order)


def _load_providers() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _PROVIDER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # optional provider not present
            _import_errors[name] = repr(exc)


def _device_type(device: Union[str, torch.device, torch.Tensor]) -> str:
    if isinstance(device, torch.Tensor):
        return device.device.type
    return torch.device(device).type


def forced_backend() -> Optional[str]:
    """The backend named by DDFAD_BACKEND, or None."""
    name = os.environ.get("DDFAD_BACKEND", "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ParameterError(f"DDFAD_BACKEND={name!r} is not one of {BACKENDS}")
    return name


def _usable(impl: Optional[_Impl], device_type: str, dtype: Optional[torch.dtype] = None) -> bool:
    if impl is None or device_type not in impl.devices:
        return False
    if dtype is not None and dtype not in impl.dtypes:
        return False
    try:
        return bool(impl.available())
    except Exception:  # an availability probe must never break dispatch
        return False


def candidates(op: str, device: Union[str, torch.device, torch.Tensor], dtype: Optional[torch.dtype] = None) -> List[str]:
    """Backends that can run ``op`` on ``device`` (a tensor: its device and dtype), in the order :func:`get` tries them."""
    _load_providers()
    device_type = _device_type(device)
    if dtype is None and isinstance(device, torch.Tensor):
        dtype = device.dtype
    impls = _REGISTRY.get(op, {})
    default = GPU_BACKENDS if device_type == "cuda" else CPU_BACKENDS
    order = list(_PREFERENCE.get((op, device_type), default)) + ["reference"]
    return [b for b in order if _usable(impls.get(b), device_type, dtype)]


def get(op: str, device: Union[str, torch.device, torch.Tensor],
        backend: Optional[str] = None) -> Tuple[str, Callable]:
    """Return ``(backend_name, fn)`` for ``op`` on ``device`` (a tensor: its device and dtype).

    ``backend`` (or the DDFAD_BACKEND environment variable) forces one backend.
    """
    _load_providers()
    if op not in _REGISTRY:
        raise ParameterError(f"unknown op {op!r}; registered: {sorted(_REGISTRY)}")
    device_type = _device_type(device)
    dtype = device.dtype if isinstance(device, torch.Tensor) else None
    wanted = backend or forced_backend()
    if wanted is not None:
        if wanted not in BACKENDS:
            raise ParameterError(f"backend {wanted!r} is not one of {BACKENDS}")
        impl = _REGISTRY[op].get(wanted)
        if not _usable(impl, device_type, dtype):
            why = ("not registered for this op" if impl is None else
                   f"does not take {dtype}" if _usable(impl, device_type) else f"cannot run on {device_type!r} here")
            hint = "; ".join(f"{k}: {v}" for k, v in _import_errors.items())
            raise BackendUnavailableError(
                f"backend {wanted!r} for op {op!r}: {why}" + (f" (provider import errors: {hint})" if hint else ""))
        return wanted, impl.fn
    found = candidates(op, device_type, dtype)
    if not found:
        raise BackendUnavailableError(f"no backend can run op {op!r} on {device_type!r}" + (f" with {dtype}" if dtype else ""))
    return found[0], _REGISTRY[op][found[0]].fn


def available() -> Dict[str, Dict[str, List[str]]]:
    """``{op: {device_type: [backends]}}`` for this machine (for diagnostics and ``ddfad bench``)."""
    _load_providers()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {op: {d: candidates(op, d) for d in devices} for op in sorted(_REGISTRY)}
