"""Shared fixtures. Triton kernels run under the interpreter when there is no GPU."""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before triton is first imported anywhere in the session
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = Path(os.environ.get("DDFAD_FSDD_DIR", ROOT.parent / "shared" / "data" / "fsdd" / "recordings"))


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """Folder of FSDD WAVs (``{digit}_{speaker}_{index}.wav``); tests that need it skip without it."""
    if not FSDD_DIR.is_dir():
        pytest.skip(f"FSDD not found at {FSDD_DIR}")
    return FSDD_DIR


@pytest.fixture(scope="session")
def fsdd_files(fsdd_dir):
    """A small fixed sample of FSDD files: every digit, several speakers, short and long clips."""
    files = sorted(fsdd_dir.glob("*.wav"))
    return files[::97][:32]


@pytest.fixture
def rng():
    """A numpy Generator seeded per test."""
    import numpy as np
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of tiny nets: faster, and immune to other processes' load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

