"""The one loader of the compiled extension ``ddfad_fast._C``.

Importing ``ddfad_fast._C`` registers its operators under one schema namespace, ``torch.ops.ddfad``: the
CPU implementations always, and the CUDA implementations of the same operators when the build included
the CUDA sources. Every backend asks here whether the extension loaded and which operators it defines;
nothing else imports ``ddfad_fast._C``.
"""
from __future__ import annotations

import importlib
from typing import Optional, Sequence

import torch

CPU_OPS = ("fd_mfcc", "griffin_lim")        # the operators the CPU backend calls


def load_error() -> Optional[str]:
    """None when ``ddfad_fast._C`` imports, else its import error (``Type: message``). Python caches the
    module, so asking again costs a dictionary lookup."""
    try:
        importlib.import_module("ddfad_fast._C")
    except (ImportError, OSError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def has_op(name: str) -> bool:
    """Whether the schema ``ddfad::name`` is registered (by the extension or a JIT build)."""
    try:
        getattr(torch.ops.ddfad, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def has_cuda_kernel(name: str) -> bool:
    """Whether ``ddfad::name`` has a CUDA implementation registered."""
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"ddfad::{name}", "CUDA"))
    except RuntimeError:        # operator not registered at all
        return False


def ops_error(names: Sequence[str] = CPU_OPS) -> Optional[str]:
    """None when the extension loads and defines every operator of ``names``, else why not."""
    error = load_error()
    if error is not None:
        return error
    missing = [n for n in names if not has_op(n)]
    if missing:
        return (f"AttributeError: ddfad_fast._C defines no {', '.join('ddfad::' + n for n in missing)} "
                "(a build older than this package: rebuild it)")
    return None
