"""Helpers shared by the test modules (test modules never import from each other)."""
from __future__ import annotations

import torch


def compile_failure(message: str) -> Exception:
    """What a failed inductor compilation raises: a backend failure wrapping the cause."""
    import torch._dynamo.exc
    return torch._dynamo.exc.BackendCompilerFailed(lambda: None, RuntimeError(message), None)
