"""Module paths of the flat layout of 0.1, kept importable for one release.

``import ddfad_fast.store`` (and every other module of the old flat layout) still works: it gives the module
at its new home, the same module object, with a :class:`DeprecationWarning` naming that home. The next
release removes these paths.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings

# old module (under ddfad_fast) -> its home
MOVED = {
    "dsp": "ops.tables", "backends": "ops.dispatch", "reference": "ops.reference", "features": "ops.features",
    "reconstruct": "ops.reconstruct", "cpu_backend": "ops.cpu", "gpu_backend": "ops.gpu",
    "transforms": "audio.transforms", "store": "data.store", "memory": "train.memory", "models": "train.models",
    "unroll": "train.unroll", "mtt": "train.mtt", "experts": "train.experts", "evaluate": "train.evaluate",
    "distill": "train.distill", "continual": "apps.continual", "nas": "apps.nas", "report": "apps.report",
    "report_html": "apps.report_html", "commands": "cli",
    **{f"commands.{name}": f"cli.{name}" for name in ("backends", "bench", "continual", "data", "distill", "evaluate",
                                                     "experts", "features", "nas", "reconstruct", "run")},
}
PACKAGE = __name__.rsplit(".", 1)[0]


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this module and importlib: ``warnings`` itself skips the
    frames of importlib's bootstrap, so only the others are counted."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        internal = "importlib" in name and "_bootstrap" in name
        if not internal:
            if name not in (__file__, importlib.__file__):
                return level
            level += 1
        frame = frame.f_back
    return 1


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(PACKAGE + ".") and fullname[len(PACKAGE) + 1:] in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        new = f"{PACKAGE}.{MOVED[spec.name[len(PACKAGE) + 1:]]}"
        warnings.warn(f"{spec.name} moved to {new}; the old path will be removed in the next release",
                      DeprecationWarning, stacklevel=_caller_stacklevel())
        return importlib.import_module(new)

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the finder of the old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
