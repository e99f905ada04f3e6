"""Where a result came from: the code's git commit (with a hash of any uncommitted diff), the date, the
machine, its load and the library versions, recorded in reports (``machine`` in a run's report.json) and in
benchmark JSON (``machine``)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Dict

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = SOURCE_ROOT) -> str:
    """HEAD of the checkout at ``root``; for a tree with uncommitted changes to tracked files,
    ``HEAD+dirty:<hash>`` with the first 12 hex digits of the SHA-256 of ``git diff HEAD`` (so the exact code a
    result came from can be told apart from HEAD's); DDFAD_GIT_COMMIT (else "unknown") where ``root`` is not a
    git checkout (an installed wheel)."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        if top.returncode == 0 and Path(top.stdout.strip()).resolve() == Path(root).resolve():
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
            diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=root, capture_output=True, timeout=60).stdout
            if not diff:
                return head.stdout.strip()
            return f"{head.stdout.strip()}+dirty:{hashlib.sha256(diff).hexdigest()[:12]}"
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("DDFAD_GIT_COMMIT", "unknown")


VERSIONED = ("torch", "numpy", "numba", "soundfile", "librosa", "torchaudio", "triton")


def _version(package: str):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance() -> Dict[str, object]:
    """This process's code and machine, now: {"git_commit", "date" (UTC, ISO 8601), "load_average_1_5_15",
    "cpu_count", "platform", "processor", "python", "torch_threads"}, the installed version (or None) of each of
    :data:`VERSIONED`, and "gpu" / "cuda" where CUDA is available."""
    import torch
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    record: Dict[str, object] = {
        "git_commit": git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1_5_15": load, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
        "torch_threads": torch.get_num_threads()}
    record.update({name: _version(name) for name in VERSIONED})
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
        record["cuda"] = torch.version.cuda
    return record
