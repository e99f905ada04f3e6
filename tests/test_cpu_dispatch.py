"""Dispatch to the CPU fast backends (``cpu``: C++ extension, ``numba``): forcing one runs it, the default order
puts the measured winner first, and a missing numba or extension falls back cleanly."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ddfad_fast.ops import dispatch, cpu, reference
from ddfad_fast.config import FeatureConfig
from ddfad_fast.ops.features import fd_mfcc as public_fd_mfcc
from ddfad_fast.ops.reconstruct import griffin_lim as public_griffin_lim
from helpers import (CPU_BACKENDS as BACKENDS, CPU_FD_MFCC as FD_MFCC, CPU_GRIFFIN_LIM as GRIFFIN_LIM,
                     CPU_MFCC as MFCC, DTYPES, noise_waves)


# ----------------------------------------------------------------------------------------------------
# dispatch
@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_backend_dispatches_here(monkeypatch, rng, backend):
    monkeypatch.setenv("DDFAD_BACKEND", backend)
    waves = torch.from_numpy(noise_waves(rng, 2, 8000)).float()
    for op, fn in (("fd_mfcc", FD_MFCC), ("mfcc", MFCC), ("griffin_lim", GRIFFIN_LIM)):
        assert dispatch.get(op, waves) == (backend, fn[backend])
    assert torch.equal(public_fd_mfcc(waves, 8000), FD_MFCC[backend](waves, FeatureConfig()))
    mag = reference.stft(waves, 256, 80, 160, "hann").abs()
    gen = torch.Generator().manual_seed(0)
    out = public_griffin_lim(mag, 256, 80, 160, n_iter=2, length=8000, generator=gen)
    turns = torch.rand(mag.shape, generator=torch.Generator().manual_seed(0))
    phase = torch.polar(torch.ones_like(turns), 2 * np.pi * turns)
    scale = mag.amax(dim=(1, 2), keepdim=True)          # the public op iterates on peak-1 magnitudes
    want = GRIFFIN_LIM[backend](mag / scale, 256, 80, 160, "hann", 2, 0.99, phase, 8000) * scale[:, :, 0]
    assert torch.equal(out, want)
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    assert dispatch.get("fd_mfcc", waves)[0] == "reference"
    assert dispatch.get("griffin_lim", mag)[0] == "reference"


@pytest.mark.skipif(not cpu.extension_loaded(), reason="C++ extension ddfad_fast._C not built")
def test_default_order_puts_the_measured_winner_first(monkeypatch):
    """C++ first; numba (slower than C++ everywhere) as the no-extension fallback of griffin_lim only (it
    beats the reference there, not for fd_mfcc at B=64); the reference last."""
    monkeypatch.delenv("DDFAD_BACKEND", raising=False)
    numba = ["numba"] if cpu.numba_available() else []
    for op in ("fd_mfcc", "mfcc", "griffin_lim"):
        for dtype in DTYPES:
            want = ["cpu"] + (numba if op == "griffin_lim" else []) + ["reference"]
            assert dispatch.candidates(op, "cpu", dtype) == want


def test_missing_numba_or_extension_falls_back_cleanly():
    """Without numba the C++ backend still registers; without the extension the reference runs, and forcing
    ``cpu`` names the missing build (checked in a fresh interpreter with the modules blocked)."""
    code = ("import os, sys; sys.modules['numba'] = None\n"
            "import ddfad_fast, torch\n"
            "from ddfad_fast.ops import cpu, dispatch\n"
            "from ddfad_fast.errors import BackendUnavailableError\n"
            "found = dispatch.candidates('fd_mfcc', 'cpu', torch.float32)\n"
            "assert 'numba' not in found and found[-1] == 'reference', found\n"
            "assert ('cpu' in found) == cpu.extension_loaded(), found\n"
            "sys.modules['ddfad_fast._C'] = None\n"
            "cpu.extension_loaded.cache_clear()\n"
            "for op in ('fd_mfcc', 'mfcc', 'griffin_lim'):\n"
            "    assert dispatch.candidates(op, 'cpu', torch.float32) == ['reference'], op\n"
            "os.environ['DDFAD_BACKEND'] = 'cpu'\n"
            "try:\n"
            "    dispatch.get('fd_mfcc', torch.zeros(1, 10))\n"
            "    raise SystemExit('forcing an unavailable backend must raise')\n"
            "except BackendUnavailableError as exc:\n"
            "    assert \"'cpu'\" in str(exc), exc\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DDFAD_REQUIRE_EXT", "DDFAD_BACKEND")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
