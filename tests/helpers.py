"""Helpers shared by the test modules (test modules never import from each other)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile
import torch

from ddfad_fast import pause
from ddfad_fast.config import ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.data import FeatureSplit
from ddfad_fast.presets import Preset

C, SHAPE = 4, (3, 6, 10)          # classes and feature shape of the synthetic splits
EXPERT_CONFIG = ExpertConfig(num_experts=2, epochs=3, batch_size=16, model=ModelConfig(width=4, depth=2))


def make_split(seed: int = 0, n_train: int = 48, n_test: int = 24) -> FeatureSplit:
    """Synthetic separable features: a random mean per class plus noise."""
    gen = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(C, *SHAPE, generator=gen)

    def draw(n):
        y = torch.arange(n) % C
        return means[y] + torch.randn(n, *SHAPE, generator=gen), y

    (xt, yt), (xs, ys) = draw(n_train), draw(n_test)
    return FeatureSplit(xt, yt, xs, ys, [str(i) for i in range(C)], FeatureConfig(), [])


def tone_dataset(folder: Path, classes: int = 3, per_class: int = 12, seconds: float = 0.25, sr: int = 8000) -> None:
    """Class sub-folders ``c0, c1, ...`` of short tones (one pitch per class, random phase and a little noise)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    for c in range(classes):
        (folder / f"c{c}").mkdir(parents=True)
        for k in range(per_class):
            wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t + rng.uniform(0, 6.3)) + 0.01 * rng.standard_normal(t.size)
            soundfile.write(folder / f"c{c}" / f"{k}.wav", wave.astype(np.float32), sr)


def compile_failure(message: str) -> Exception:
    """What a failed inductor compilation raises: a backend failure wrapping the cause."""
    import torch._dynamo.exc
    return torch._dynamo.exc.BackendCompilerFailed(lambda: None, RuntimeError(message), None)


# `ddfad run` at its smallest (one thread: the in-process API runs compare bit for bit with it)
TINY_RUN = ["--width", "4", "--num-experts", "1", "--expert-epochs", "3", "--iterations", "2", "--syn-steps", "2",
            "--no-compile", "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1", "--threads", "1"]


def fsdd_subset(fsdd_dir: Path, to: Path, digits="012", speakers=("jackson", "george"), below=8) -> list:
    """A small FSDD-named folder: ``digits`` x ``speakers`` x indices < ``below`` (0-4: the official test split)."""
    to.mkdir(parents=True)
    for f in sorted(fsdd_dir.glob("*.wav")):
        digit, speaker, index = f.stem.split("_")
        if digit in digits and speaker in speakers and int(index) < below:
            shutil.copy(f, to / f.name)
    return sorted(to.glob("*.wav"))


def tiny_preset(run_folder: Path) -> Preset:
    """The preset a finished run folder ran with."""
    return Preset.from_dict(json.loads((run_folder / "run.json").read_text())["preset"])


# ---- `ddfad` in a subprocess: kill / interrupt tests (ddfad_fast.pause holds it at a known step) ----------------

CLI_ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
CLI_ENV.pop(pause.ENV, None)


def start_cli(args: Sequence[str], pause_at: Optional[str] = None) -> subprocess.Popen:
    """Start ``python -m ddfad_fast.cli *args``; its output goes to an unnamed temporary file (a pipe could fill
    up and stall it). ``pause_at``: the value of ddfad_fast.pause's variable. The child gets Ctrl-C's default
    handling even when this process ignores SIGINT (as a background job of a shell script does: a child
    inherits an ignored signal, and would then run on through every SIGINT a test sends it)."""
    env = dict(CLI_ENV, **({pause.ENV: pause_at} if pause_at else {}))
    log = tempfile.TemporaryFile(mode="w+")
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:                   # a handled signal is reset to the default in the child, an ignored one is not
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ddfad_fast.cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc.log = log
    return proc


def cli_output(proc: subprocess.Popen) -> str:
    """Everything ``proc`` (from :func:`start_cli`) printed so far."""
    proc.log.seek(0)
    return proc.log.read()


def finish_cli(args: Sequence[str], expect: int = 0) -> str:
    """Run the CLI to its end; assert its exit code; return its output."""
    proc = start_cli(args)
    proc.wait(timeout=900)
    output = cli_output(proc)
    assert proc.returncode == expect, output[-3000:]
    return output


def start_paused(args: Sequence[str], stage: str, step: int, folder: Path, timeout: float = 600.0) -> subprocess.Popen:
    """Start the CLI held at the ``step``-th pause point of ``stage`` (ddfad_fast.pause): returned once it waits
    there. AssertionError (with its output) when it ends first or does not get there within ``timeout`` s."""
    proc = start_cli(args, pause_at=f"{stage}:{step}:{folder}")
    if not wait_reached(proc, folder, timeout):
        raise AssertionError(f"ended (exit {proc.returncode}) before {stage} step {step}:\n{cli_output(proc)[-3000:]}")
    return proc


def wait_reached(proc: subprocess.Popen, folder: Path, timeout: float = 600.0) -> bool:
    """True once ``proc`` waits at its pause point, False when it ended first (it then has its returncode)."""
    deadline = time.monotonic() + timeout
    while not (folder / pause.REACHED).is_file():
        if proc.poll() is not None:
            return (folder / pause.REACHED).is_file()
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"not at its pause point after {timeout:g} s:\n{cli_output(proc)[-3000:]}")
        time.sleep(0.01)
    return True
