"""The ``ddfad`` command line (:func:`main`): one module per sub-command, each parsing its arguments and
making one call into :mod:`ddfad_fast.apps` or :mod:`ddfad_fast.train`."""
from __future__ import annotations

from .entry import main

__all__ = ["main"]
