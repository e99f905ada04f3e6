"""The wheel: ``python -m build --wheel --no-isolation`` (pure-torch build, DDFAD_NO_EXT=1: seconds, not a
compile) gives a wheel with every subpackage and the ``ddfad`` command; installed into a fresh virtual
environment it imports from there, computes features on plain torch and says once what is missing."""
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "ddfad_fast"          # the build leaves build/ behind: not here
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "dist", "*.egg-info", "*.so",
                                                                "__pycache__", ".*"))
    env = dict(os.environ, DDFAD_NO_EXT="1", DDFAD_REQUIRE_EXT="0")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("ddfad_fast-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_holds_every_subpackage_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("ddfad_fast/__init__.py", "ddfad_fast/train/mtt.py", "ddfad_fast/audio/transforms.py",
                   "ddfad_fast/compat/librosa/__init__.py", "ddfad_fast/cli/run.py", "ddfad_fast/apps/run.py",
                   "ddfad_fast/ops/_ext.py", "ddfad_fast/data/store.py", "ddfad_fast/kernels/fd_mfcc.py"):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ddfad = ddfad_fast.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: fast" in metadata


def test_wheel_installs_and_runs_in_a_fresh_environment(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # torch and numpy from this machine through PYTHONPATH: its site-packages' .pth files (an editable
    # install of this checkout among them) are not run, so only the wheel provides ddfad_fast
    import sysconfig
    deps = sysconfig.get_paths()["purelib"]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", site,
                    str(wheel)], check=True, timeout=300)
    smoke = (
        "import warnings, torch, ddfad_fast as dd\n"
        "from ddfad_fast.audio import transforms\nfrom ddfad_fast.train import mtt\n"
        "import ddfad_fast.compat.librosa\n"
        "assert dd.__file__.startswith(%r), dd.__file__\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    feats = dd.fd_mfcc(torch.randn(2, 8000) * 0.1, 8000)\n"
        "    dd.fd_mfcc(torch.randn(2, 8000) * 0.1, 8000)\n"
        "assert feats.shape == (2, 3, 20, 101)\n"
        "notes = [str(w.message) for w in caught if issubclass(w.category, dd.BackendFallbackWarning)]\n"
        "assert len(notes) == 1 and 'cpu' in notes[0], notes\n"
        "print('ok', dd.__version__)\n" % site)
    env = {k: v for k, v in os.environ.items() if k not in ("DDFAD_REQUIRE_EXT",)}
    env["PYTHONPATH"] = deps
    proc = subprocess.run([str(python), "-c", smoke], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr
    help_text = subprocess.run([str(python), "-m", "ddfad_fast.cli", "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "distil" in help_text.stdout.lower()
