"""The package's layout: sub-packages that import only downward, no import circle, no private name imported
across modules, and the old flat module paths still importable for one release (with a DeprecationWarning)."""
from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path
from typing import Dict, Set

import pytest

import ddfad_fast
from ddfad_fast._moved import MOVED

PACKAGE = Path(ddfad_fast.__file__).parent
# each module or sub-package, by floor: a module may import its own floor and the floors below it
FLOORS = {"errors": 0, "_moved": 0, "names": 0, "provenance": 0, "config": 1, "io": 1, "outputs": 1, "schemas": 1, "distributed": 1,
          "pause": 1, "resources": 2, "presets": 2,
          "_C": 0, "kernels": 3, "ops": 3, "audio": 4, "compat": 5, "data": 5, "train": 6, "apps": 7, "cli": 8}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> Dict[str, Set[str]]:
    """module -> the package modules it imports (at module level or inside functions)."""
    graph: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("ddfad_fast"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                              or (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists() else target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("ddfad_fast"))
    return graph


def _floor(module: str) -> int:
    parts = module.split(".")
    return 99 if len(parts) == 1 else FLOORS[parts[1]]


def test_every_module_has_a_floor():
    for module in _imports():
        if module != "ddfad_fast":
            assert module.split(".")[1] in FLOORS, f"{module} is in no floor of the layout"


def test_imports_only_go_down():
    upward = sorted(f"{m} imports {t}" for m, targets in _imports().items() if m != "ddfad_fast"
                    for t in targets if _floor(t) > _floor(m))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = _imports()
    graph.pop("ddfad_fast", None)            # the top-level package only re-exports
    # a package's __init__ importing its own modules is not a circle of the code
    edges = {m: {t for t in ts if t != "ddfad_fast" and not (m.count(".") == 1 and t.startswith(m + "."))}
             for m, ts in graph.items()}
    state: Dict[str, int] = {}
    stack = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_no_private_name_is_imported_from_another_module():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    module_itself = node.module is None or (node.level and alias.name in ("_ext", "_numba_kernels"))
                    if private and not module_itself:
                        found.append(f"{_module_name(path)}:{node.lineno} imports {alias.name}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_warn_and_give_the_new_module(old):
    name = f"ddfad_fast.{old}"
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    new = importlib.import_module(f"ddfad_fast.{MOVED[old]}")
    assert module is new
    notes = [w for w in caught if issubclass(w.category, DeprecationWarning) and name in str(w.message)]
    assert len(notes) == 1 and f"ddfad_fast.{MOVED[old]}" in str(notes[0].message)
    assert notes[0].filename == __file__, "the warning must point at the importing line"
    sys.modules.pop(name, None)


def test_the_package_and_its_sub_packages_import_in_a_fresh_interpreter():
    import subprocess
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "import ddfad_fast, ddfad_fast.ops, ddfad_fast.audio, ddfad_fast.data, ddfad_fast.train, ddfad_fast.apps, "
            "ddfad_fast.cli, ddfad_fast.compat.librosa\n"
            "from ddfad_fast.data import FeatureNorm, load_feature_split\n"
            "from ddfad_fast.audio import load_audio, spectral_convergence\n"
            "print(ddfad_fast.fd_mfcc.__module__, ddfad_fast.spectral_convergence.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ddfad_fast.ops.features", "ddfad_fast.audio.metrics"]


def test_no_test_module_imports_another_test_module():
    """Shared test code lives in tests/helpers.py and tests/conftest.py, so a test module runs on its own."""
    tests = Path(__file__).parent
    found = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not found, found
