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
