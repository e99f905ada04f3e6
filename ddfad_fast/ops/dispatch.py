"""The backend dispatcher: op name -> implementations.

Backends: ``reference`` (plain torch, the oracle), ``cpu`` (C++ extension ddfad_fast._C),
``numba``, ``triton``, ``cuda`` (CUDA sources of ddfad_fast._C).

Order of choice (docs/architecture.md section 2): CUDA tensor -> the GPU backends in the op's preferred order
-> reference; CPU tensor -> ``cpu`` or ``numba`` in the op's preferred order -> reference.
``DDFAD_BACKEND=reference|triton|cuda|cpu|numba`` forces one; if it cannot run the op on that
device a :class:`BackendUnavailableError` is raised (never a silent fallback when forced).
``DDFAD_REQUIRE_EXT=1`` makes every dispatch raise when the C++ extension does not load (CI sets it).

Nothing falls back in silence: whenever dispatch passes over a backend of the automatic order — it is
unavailable (extension not built, dependency missing, provider module that failed to import, availability
probe that raised), it does not take the input's dtype (the GPU kernels are float32), or it does not
implement the op — a :class:`BackendFallbackWarning` names the op, the backend and the reason, once per
(op, backend, reason). Each decision is logged at DEBUG level on the logger
``ddfad_fast.ops.dispatch`` as ``op -> backend``; :func:`explain` (``ddfad backends``) says why each
backend runs or not, and :func:`exercised` lists the implementations that ran in this process.

Providers register themselves with :func:`register` when their module is imported; the modules are
imported lazily on the first :func:`get` so that ``import ddfad_fast`` stays cheap.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

import torch

from ..errors import BackendFallbackWarning, BackendUnavailableError, ParameterError
from . import _ext

BACKENDS = ("reference", "cpu", "numba", "triton", "cuda")
GPU_BACKENDS = ("triton", "cuda")
CPU_BACKENDS = ("cpu", "numba")
REQUIRE_EXT_ENV = "DDFAD_REQUIRE_EXT"

# Modules that call register() at import, with the backends they provide. A module that fails to
# import contributes nothing; its backends are then reported unavailable with the import error.
_PROVIDER_MODULES: Dict[str, Tuple[str, ...]] = {
    "ddfad_fast.ops.reference": ("reference",),
    "ddfad_fast.ops.cpu": ("cpu", "numba"),
    "ddfad_fast.ops.gpu": ("triton", "cuda"),
}

_log = logging.getLogger(__name__)

Device = Union[str, torch.device, torch.Tensor]


@dataclass
class _Impl:
    fn: Callable
    devices: Tuple[str, ...]          # device types it runs on: "cpu", "cuda"
    available: Callable[[], bool]
    dtypes: Tuple[torch.dtype, ...]   # input dtypes it accepts
    why_unavailable: Optional[Callable[[], Optional[str]]] = None


_REGISTRY: Dict[str, Dict[str, _Impl]] = {}
# preferred order among the fast backends, per op and device type (set from benchmark results)
_PREFERENCE: Dict[Tuple[str, str], Tuple[str, ...]] = {}
_loaded = False
_import_errors: Dict[str, str] = {}
_WARNED: Set[Tuple[str, str, str]] = set()
_EXERCISED: Set[Tuple[str, str, str]] = set()   # (op, backend, device type) of implementations that ran


# ----------------------------------------------------------------------------------------------------
# registration
def recorded(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator for a backend implementation: each eager call notes (op, backend, device of its first tensor) for
    :func:`exercised` (calls traced by torch.compile are not noted, so compiled graphs stay whole)."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            if not torch.compiler.is_compiling():
                device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
                _EXERCISED.add((op, backend, device))
            return fn(*args, **kwargs)
        run._ddfad_recorded = (op, backend)  # type: ignore[attr-defined]
        return run
    return wrap


def register(op: str, backend: str, fn: Callable, devices: Tuple[str, ...],
             available: Callable[[], bool] = lambda: True,
             dtypes: Tuple[torch.dtype, ...] = (torch.float32, torch.float64),
             why_unavailable: Optional[Callable[[], Optional[str]]] = None) -> None:
    """Register ``fn`` as the ``backend`` implementation of ``op`` for the given device types and input dtypes.

    ``available`` probes whether it can run here; ``why_unavailable`` says why not when it cannot (for
    warnings and ``ddfad backends``). ``fn`` not decorated with :func:`recorded` is wrapped in it.
    """
    if backend not in BACKENDS:
        raise ParameterError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if getattr(fn, "_ddfad_recorded", None) != (op, backend):
        fn = recorded(op, backend)(fn)
    _REGISTRY.setdefault(op, {})[backend] = _Impl(fn, tuple(devices), available, tuple(dtypes), why_unavailable)


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
        except ImportError as exc:  # reported by every dispatch that would have used its backends
            _import_errors[name] = f"{type(exc).__name__}: {exc}"


def _device_type(device: Device) -> str:
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


def extension_required() -> bool:
    """True when DDFAD_REQUIRE_EXT=1: a C++ extension that does not load is then an error, not a fallback."""
    value = os.environ.get(REQUIRE_EXT_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ParameterError(f"{REQUIRE_EXT_ENV}={value!r}: expected 1 (require the extension) or 0")
    return value == "1"


def check_required_extension() -> None:
    """Raise :class:`BackendUnavailableError`, naming the import error, when DDFAD_REQUIRE_EXT=1 and ddfad_fast._C does not load."""
    if not extension_required():
        return
    _load_providers()
    provider_error = _import_errors.get("ddfad_fast.ops.cpu")
    if provider_error is not None:
        raise BackendUnavailableError(f"{REQUIRE_EXT_ENV}=1 but ddfad_fast.ops.cpu failed to import: {provider_error}")
    error = _ext.ops_error()
    if error is not None:
        raise BackendUnavailableError(f"{REQUIRE_EXT_ENV}=1 but the C++ extension ddfad_fast._C cannot be used: {error} "
                                      "(build it with `python setup.py build_ext --inplace` or reinstall the package)")


# ----------------------------------------------------------------------------------------------------
# decisions
def _order(op: str, device_type: str) -> List[str]:
    """The automatic order for ``op`` on ``device_type``: the preferred fast backends, then the reference."""
    default = GPU_BACKENDS if device_type == "cuda" else CPU_BACKENDS
    return list(_PREFERENCE.get((op, device_type), default)) + ["reference"]


def _status(op: str, backend: str, device_type: str, dtype: Optional[torch.dtype]) -> Tuple[str, str]:
    """(status, reason): status "ok", "not registered", "other device", "other dtype" or "unavailable"."""
    impl = _REGISTRY.get(op, {}).get(backend)
    if impl is None:
        failed = [f"{m} failed to import: {err}" for m, err in _import_errors.items()
                  if backend in _PROVIDER_MODULES.get(m, ())]
        if failed:
            return "unavailable", "; ".join(failed)
        return "not registered", f"not registered for op {op!r}"
    if device_type not in impl.devices:
        return "other device", f"runs on {', '.join(impl.devices)} tensors, not {device_type}"
    if dtype is not None and dtype not in impl.dtypes:
        return "other dtype", f"does not take {dtype} (takes {', '.join(str(d) for d in impl.dtypes)})"
    try:
        ok = bool(impl.available())
    except Exception as exc:  # a broken probe is reported, never raised into the caller's op
        return "unavailable", f"availability probe raised {type(exc).__name__}: {exc}"
    if ok:
        return "ok", ""
    reason = None
    if impl.why_unavailable is not None:
        try:
            reason = impl.why_unavailable()
        except Exception as exc:
            reason = f"its reason probe raised {type(exc).__name__}: {exc}"
    return "unavailable", reason or "its availability probe says no"


def warn_fallback(op: str, backend: str, reason: str, chosen: str) -> None:
    """Warn (a BackendFallbackWarning, once per op, backend and reason) that ``backend`` was passed over for ``chosen``."""
    key = (op, backend, reason)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(f"ddfad_fast: backend {backend!r} cannot run op {op!r} here ({reason}); running {chosen!r} "
                  f"instead (`ddfad backends` explains every choice)", BackendFallbackWarning, stacklevel=4)


def candidates(op: str, device: Device, dtype: Optional[torch.dtype] = None) -> List[str]:
    """Backends that can run ``op`` on ``device`` (a tensor: its device and dtype), in the order :func:`get` tries them."""
    _load_providers()
    device_type = _device_type(device)
    if dtype is None and isinstance(device, torch.Tensor):
        dtype = device.dtype
    return [b for b in _order(op, device_type) if _status(op, b, device_type, dtype)[0] == "ok"]


def get(op: str, device: Device, backend: Optional[str] = None) -> Tuple[str, Callable]:
    """Return ``(backend_name, fn)`` for ``op`` on ``device`` (a tensor: its device and dtype).

    ``backend`` (or the DDFAD_BACKEND environment variable) forces one backend. Passing over an
    backend of the automatic order warns once (:class:`BackendFallbackWarning`); with
    DDFAD_REQUIRE_EXT=1 a C++ extension that does not load raises :class:`BackendUnavailableError`.
    """
    _load_providers()
    check_required_extension()
    if op not in _REGISTRY:
        raise ParameterError(f"unknown op {op!r}; registered: {sorted(_REGISTRY)}")
    device_type = _device_type(device)
    dtype = device.dtype if isinstance(device, torch.Tensor) else None
    wanted = backend or forced_backend()
    if wanted is not None:
        if wanted not in BACKENDS:
            raise ParameterError(f"backend {wanted!r} is not one of {BACKENDS}")
        status, reason = _status(op, wanted, device_type, dtype)
        if status != "ok":
            raise BackendUnavailableError(f"backend {wanted!r} for op {op!r} on {device_type!r}: {reason}")
        chosen = wanted
    else:
        passed: List[Tuple[str, str]] = []
        chosen = ""
        for name in _order(op, device_type):
            status, reason = _status(op, name, device_type, dtype)
            if status == "ok":
                chosen = name
                break
            passed.append((name, reason))          # every backend passed over is said, whatever the reason
        if not chosen:
            raise BackendUnavailableError(f"no backend can run op {op!r} on {device_type!r}"
                                          + (f" with {dtype}" if dtype else "")
                                          + "".join(f"; {b}: {r}" for b, r in passed))
        for name, reason in passed:
            warn_fallback(op, name, reason, chosen)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s -> %s (%s%s%s)", op, chosen, device_type, f", {dtype}" if dtype else "",
                   ", forced" if wanted else "")
    return chosen, _REGISTRY[op][chosen].fn


# ----------------------------------------------------------------------------------------------------
# diagnostics
def devices() -> List[str]:
    """Device types of this machine: ``["cpu"]``, plus ``"cuda"`` when a GPU is visible."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ops() -> List[str]:
    """Names of the registered ops."""
    _load_providers()
    return sorted(_REGISTRY)


def provider_errors() -> Dict[str, str]:
    """``{module: import error}`` of the provider modules that failed to import."""
    _load_providers()
    return dict(_import_errors)


def registered(op: str) -> List[str]:
    """Backends registered for ``op`` (whether or not they can run here), in :data:`BACKENDS` order."""
    _load_providers()
    return [b for b in BACKENDS if b in _REGISTRY.get(op, {})]


def available() -> Dict[str, Dict[str, List[str]]]:
    """``{op: {device_type: [backends]}}`` for this machine (for diagnostics and ``ddfad bench``)."""
    _load_providers()
    return {op: {d: candidates(op, d) for d in devices()} for op in sorted(_REGISTRY)}


def default_choice() -> Dict[str, Dict[str, str]]:
    """``{op: {device_type: backend}}``: what the automatic order runs for float32 input here (no warnings)."""
    out: Dict[str, Dict[str, str]] = {}
    for op in ops():
        for d in devices():
            found = candidates(op, d, torch.float32)
            out.setdefault(op, {})[d] = found[0] if found else "none"
    return out


def explain(op: str, device_type: str, dtype: torch.dtype = torch.float32) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """Why each backend runs ``op`` on ``device_type`` with ``dtype`` input, or not.

    Returns ``(chosen, [(backend, why)])``: the backend a call would run (None when none can; a forced
    DDFAD_BACKEND counts) and one line per backend, the automatic order first.
    """
    _load_providers()
    order = _order(op, device_type)
    forced = forced_backend()
    status = {b: _status(op, b, device_type, dtype) for b in BACKENDS}
    automatic = next((b for b in order if status[b][0] == "ok"), None)
    chosen = forced if forced is not None and status[forced][0] == "ok" else (None if forced else automatic)
    lines: List[Tuple[str, str]] = []
    for b in order + [b for b in BACKENDS if b not in order]:
        kind, reason = status[b]
        if b == chosen:
            why = "runs" + (" (forced by DDFAD_BACKEND)" if forced else "")
        elif forced == b:
            why = f"forced by DDFAD_BACKEND but cannot run: {reason}"
        elif kind == "ok" and b == automatic:
            why = f"available; the automatic choice, but DDFAD_BACKEND forces {forced!r}"
        elif kind == "ok" and b in order:
            why = f"available; after {automatic!r} in the automatic order"
        elif kind == "ok":
            why = f"available; not in the automatic order (DDFAD_BACKEND={b} forces it)"
        elif kind == "unavailable":
            why = f"unavailable: {reason}"
        else:
            why = reason
        lines.append((b, why))
    return chosen, lines


def exercised() -> Dict[str, List[str]]:
    """``{op: [labels]}`` of the implementations that ran in this process (via dispatch or called directly).

    Labels are backend names; ``triton(interpreter)`` for Triton on CPU tensors (TRITON_INTERPRET=1),
    ``reference(cuda)`` for the reference on CUDA tensors.
    """
    natural = {"triton": "cuda", "cuda": "cuda"}
    out: Dict[str, Set[str]] = {}
    for op, backend, device in _EXERCISED:
        if device == natural.get(backend, "cpu"):
            label = backend
        elif backend == "triton" and device == "cpu":
            label = "triton(interpreter)"
        else:
            label = f"{backend}({device})"
        out.setdefault(op, set()).add(label)
    return {op: sorted(labels) for op, labels in sorted(out.items())}
