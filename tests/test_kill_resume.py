"""Runs killed with SIGKILL (or stopped with Ctrl-C) and resumed end exactly where an uninterrupted run ends.

`ddfad run` chains features, experts (checkpoint every epoch), distillation (checkpoint every 2
iterations) and evaluation (checkpoint after each net). The tests kill it as soon as each stage's
checkpoint appears, and at random moments, resume, and compare every number of the final report, the
distilled set and the experts with an uninterrupted run. The random moments come from a seed that the
test prints; ``DDFAD_KILL_SEED=N`` replays them.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from ddfad_fast.io import load_artifact

TINY = ["--cpc", "1", "--max-per-class", "6", "--width", "8", "--num-experts", "2", "--expert-epochs", "6",
        "--expert-batch-size", "16", "--iterations", "8", "--syn-steps", "3", "--max-start-epoch", "3",
        "--checkpoint-every", "2", "--no-compile", "--num-nets", "2", "--eval-epochs", "12", "--full-epochs", "2",
        "--no-audio"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def ddfad(*args: str) -> subprocess.Popen:
    """Start the CLI; its output goes to an unnamed temporary file (a pipe could fill up and stall it)."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "ddfad_fast.cli", *args], env=ENV, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def output_of(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def kill_when(proc: subprocess.Popen, out: Path, pattern: str, timeout: float = 300.0,
              signal_: int = signal.SIGKILL) -> bool:
    """Send ``signal_`` to ``proc`` as soon as a file matching ``pattern`` exists under ``out``; False if it
    ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(out.glob(pattern)):
            proc.send_signal(signal_)
            proc.wait(timeout=120)
            return proc.returncode == -signal_ or signal_ != signal.SIGKILL   # False: it had already finished
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {pattern}")


def kill_seed() -> int:
    """The seed of the random kill moments: ``DDFAD_KILL_SEED`` when set (to replay a failure), else fresh."""
    given = os.environ.get("DDFAD_KILL_SEED")
    return int(given) if given else int.from_bytes(os.urandom(4), "little")


def finish(args, expect=0) -> str:
    proc = ddfad(*args)
    proc.wait(timeout=600)
    output = output_of(proc)
    assert proc.returncode == expect, output[-3000:]
    return output


@pytest.fixture(scope="module")
def reference_run(fsdd_dir, tmp_path_factory):
    """An uninterrupted tiny run: (its folder, its wall time in s)."""
    reference = tmp_path_factory.mktemp("reference") / "run"
    start = time.monotonic()
    finish(["run", "--data", str(fsdd_dir), "--out", str(reference), *TINY])
    return reference, time.monotonic() - start


def assert_same_run(reference: Path, out: Path) -> None:
    want = json.loads((reference / "report.json").read_text())
    got = json.loads((out / "report.json").read_text())
    assert got["accuracy"] == want["accuracy"] and got["alpha"] == want["alpha"]
    a = load_artifact(reference / "cpc1" / "distilled.pt", kind="distilled")
    b = load_artifact(out / "cpc1" / "distilled.pt", kind="distilled")
    assert torch.equal(a["features"], b["features"]) and torch.equal(a["alpha"], b["alpha"])
    for expert in ("expert_000.pt", "expert_001.pt"):
        assert torch.equal(load_artifact(reference / "experts" / expert)["params"],
                           load_artifact(out / "experts" / expert)["params"])
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"


@pytest.mark.slow
def test_sigkill_at_each_stage_then_resume_matches_uninterrupted(fsdd_dir, reference_run, tmp_path):
    out = tmp_path / "killed"
    args = ["run", "--data", str(fsdd_dir), "--out", str(out), *TINY]
    killed = []
    for n, pattern in enumerate(["experts/expert_000.partial.pt", "experts/expert_001.partial.pt",
                                 "cpc1/checkpoint.pt", "eval_progress/*.pt"]):
        proc = ddfad(*args, *(["--resume"] if n else []))
        killed.append(kill_when(proc, out, pattern))
    assert all(killed), killed
    finish(args + ["--resume"])
    assert_same_run(reference_run[0], out)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(fsdd_dir, reference_run, tmp_path):
    reference, duration = reference_run
    out = tmp_path / "random"
    args = ["run", "--data", str(fsdd_dir), "--out", str(out), *TINY]
    seed = kill_seed()
    print(f"SIGKILL moments drawn with DDFAD_KILL_SEED={seed} (set it to replay them)")
    draw = random.Random(seed)
    delays = [draw.uniform(0.2, 0.9) * duration for _ in range(4)]
    kills = []
    for n, delay in enumerate(delays):                 # anywhere: mid-write, mid-epoch, mid-iteration
        proc = ddfad(*args, *(["--resume"] if n else []))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills.append(round(delay, 2))
        else:                                          # it finished before its moment
            assert proc.returncode == 0, output_of(proc)[-3000:]
    print(f"SIGKILL after {kills} s (of draws {[round(d, 2) for d in delays]} s) of a {duration:.1f} s run")
    assert kills, f"every start finished before its moment: nothing was killed (DDFAD_KILL_SEED={seed})"
    finish(args + ["--resume"])
    assert_same_run(reference, out)


@pytest.mark.slow
def test_ctrl_c_saves_then_resume_matches_uninterrupted(fsdd_dir, reference_run, tmp_path):
    out = tmp_path / "interrupted"
    args = ["run", "--data", str(fsdd_dir), "--out", str(out), *TINY]
    proc = ddfad(*args)
    assert kill_when(proc, out, "cpc1/checkpoint.pt", signal_=signal.SIGINT)   # during distillation
    output = output_of(proc)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "--resume" in output, output[-3000:]
    assert (out / "cpc1" / "checkpoint.pt").is_file()
    finish(args + ["--resume"])
    assert_same_run(reference_run[0], out)


@pytest.mark.slow
def test_sigkill_during_features_then_resume(fsdd_files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in fsdd_files[:24]:
        (folder / path.name).write_bytes(path.read_bytes())
    whole = tmp_path / "whole.pt"
    finish(["features", str(folder), "--out", str(whole), "--quiet", "--checkpoint-every", "3"])
    out = tmp_path / "f.pt"
    args = ["features", str(folder), "--out", str(out), "--quiet", "--checkpoint-every", "3"]
    assert kill_when(ddfad(*args), tmp_path, "f.pt.parts/shard_00000.json"), "the run ended before the kill"
    finish(args, expect=2)                           # an unfinished run is never silently restarted
    finish(args + ["--resume"])
    a, b = load_artifact(whole), load_artifact(out)
    assert torch.equal(a["features"], b["features"]) and a["paths"] == b["paths"]
