"""The documentation site builds with every warning an error (a broken docstring, a dead reference, a page
left out of the tree), and its command-line reference is the parser's own help."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sphinx")


def test_site_builds_without_warnings(tmp_path):
    out = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    cli = (out / "cli.html").read_text()
    for command in ("features", "experts", "distill", "evaluate", "run", "reconstruct"):
        assert f"ddfad {command}" in cli
    api = (out / "reference" / "ops.html").read_text()
    assert "ddfad_fast.ops.features.fd_mfcc" in api and "ddfad_fast.ops.reconstruct.griffin_lim" in api


# Public functions whose docstrings follow numpydoc (Parameters / Returns sections), as the API reference
# renders them; a function added to one of these namespaces without such a docstring fails here.
NUMPYDOC_NAMESPACES = ("ddfad_fast", "ddfad_fast.audio", "ddfad_fast.data")


def test_public_functions_have_numpydoc_sections():
    import importlib
    import inspect
    missing = []
    for name in NUMPYDOC_NAMESPACES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if not inspect.isfunction(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            sections = [s for s in ("Parameters\n----------", "Returns\n-------") if s not in doc]
            if sections:
                missing.append(f"{name}.{attr}: no {', '.join(s.split()[0] for s in sections)}")
    assert not missing, "\n".join(missing)
