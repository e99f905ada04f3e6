"""Sub-commands of the ``ddfad`` CLI (see ddfad_fast.cli)."""
from __future__ import annotations

import argparse
import warnings

_WARNED: set = set()


class DeprecatedAlias(argparse.Action):
    """The old spelling of a renamed flag, kept for one release: it stores its value like the new
    spelling (same ``dest``) and warns once per process (a FutureWarning naming the new spelling).

    ``parser.add_argument("--old", dest=NEW_DEST, action=DeprecatedAlias, new="--new", type=...)``.
    """

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        kwargs.setdefault("help", f"deprecated spelling of {new}")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        key = (parser.prog, option_string)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"{parser.prog}: {option_string} is deprecated and will be removed in the next release; "
                          f"use {self.new}", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


