"""Runs killed with SIGKILL (or stopped with Ctrl-C) and resumed end exactly where an uninterrupted run ends.

`ddfad run` chains features, experts (checkpoint every epoch), distillation (checkpoint every 2
iterations), evaluation (checkpoint every 10 epochs and on Ctrl-C), audio and the report. The signal is
sent while the process waits at a pause point of the stage under test (ddfad_fast.pause:
``DDFAD_TEST_PAUSE_AT``), so it lands inside that stage whatever the machine's speed; then the run is
resumed and every number of the final report, the distilled set and the experts is compared with an
uninterrupted run. The random kills are drawn among the pause points, each let go on for a random
moment (mid-write, mid-epoch, mid-iteration) first, from a seed that the test prints;
``DDFAD_KILL_SEED=N`` replays them.
"""
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from helpers import cli_output, finish_cli, start_cli, start_paused, wait_reached

from ddfad_fast import pause
from ddfad_fast.io import load_artifact

TINY = ["--cpc", "1", "--max-per-class", "6", "--width", "8", "--num-experts", "2", "--expert-epochs", "6",
        "--expert-batch-size", "16", "--iterations", "8", "--syn-steps", "3", "--max-start-epoch", "3",
        "--checkpoint-every", "2", "--no-compile", "--num-nets", "2", "--eval-epochs", "12", "--full-epochs", "2"]
STAGES = pause.STAGES
# the pause point each stage is stopped at, and how many points a fresh tiny run passes in each stage
STOP_AT = {"features": 1, "experts": 3, "distillation": 3, "evaluation": 11, "audio": 3, "report": 1}
POINTS = {"features": 1, "experts": 12, "distillation": 8, "evaluation": 12, "audio": 10, "report": 2}
# what a run stopped in the stage must not have written yet (it went no further), and what it must have kept
NOT_YET = {"features": "cache/*/index.json", "experts": "experts/expert_001.pt", "distillation": "cpc1/distilled.pt",
           "evaluation": "eval.json", "audio": "cpc1/audio/manifest.csv", "report": "report.json"}
KEPT = {"experts": "experts/expert_000.partial.pt", "distillation": "cpc1/checkpoint.pt",
        "evaluation": "eval_progress/*.pt", "audio": "cpc1/audio/*.wav", "report": "eval.json"}


def run_args(data: Path, out: Path, resume: bool = False) -> list:
    return ["run", "--data", str(data), "--out", str(out), *TINY] + (["--resume"] if resume else [])


def kill_seed() -> int:
    """The seed of the random kill moments: ``DDFAD_KILL_SEED`` when set (to replay a failure), else fresh."""
    given = os.environ.get("DDFAD_KILL_SEED")
    return int(given) if given else int.from_bytes(os.urandom(4), "little")


@pytest.fixture(scope="module")
def reference_run(fsdd_dir, tmp_path_factory) -> Path:
    """An uninterrupted tiny run (audio included)."""
    reference = tmp_path_factory.mktemp("reference") / "run"
    finish_cli(run_args(fsdd_dir, reference))
    return reference


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
    manifest = "cpc1/audio/manifest.csv"
    assert (out / manifest).read_text() == (reference / manifest).read_text()
    assert json.loads((out / "cpc1/audio/reconstruction.json").read_text())["clips"] == \
        json.loads((reference / "cpc1/audio/reconstruction.json").read_text())["clips"]
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert not list(out.glob("eval_progress/*.pt")), "an evaluation checkpoint was left behind"


def assert_stopped_in(stage: str, out: Path, output: str) -> None:
    """The run went no further than ``stage`` and kept what that stage had finished."""
    assert not list(out.glob(NOT_YET[stage])), f"stopped in {stage}, yet {NOT_YET[stage]} exists:\n{output[-3000:]}"
    if stage in KEPT:
        assert list(out.glob(KEPT[stage])), f"stopped in {stage} without {KEPT[stage]}:\n{output[-3000:]}"


def test_pause_point_is_a_no_op_unless_armed_and_validates_its_spec(tmp_path):
    assert not pause.ARMED                     # the test session never sets it: the training loops skip it
    pause.point("experts")
    for bad in ("experts", "experts:0:/x", "nowhere:1:/x", "experts:one:/x", "experts:1:"):
        with pytest.raises(ValueError, match=pause.ENV):
            pause.parse(bad)
    assert pause.parse(f"audio:2:{tmp_path}/a:b") == ("audio", 2, tmp_path / "a:b")
    try:
        pause.configure(f"report:2:{tmp_path}")
        (tmp_path / pause.GO).touch()
        pause.point("experts")
        pause.point("report")
        assert not (tmp_path / pause.REACHED).exists()         # step 1 of report, 2 wanted
        pause.point("report")
        assert (tmp_path / pause.REACHED).read_text().startswith("report:2 ")
    finally:
        pause.configure(None)
    assert not pause.ARMED


def test_a_malformed_pause_spec_is_a_usage_error(tmp_path):
    proc = start_cli(["backends"], pause_at="experts:zero:" + str(tmp_path))
    proc.wait(timeout=300)
    assert proc.returncode == 2 and pause.ENV in cli_output(proc), cli_output(proc)[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_in_each_stage_saves_then_resume_matches_uninterrupted(stage, fsdd_dir, reference_run, tmp_path):
    out = tmp_path / "interrupted"
    proc = start_paused(run_args(fsdd_dir, out), stage, STOP_AT[stage], tmp_path / "pause")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    print(f"{stage}: exit {proc.returncode} {time.monotonic() - sent:.2f} s after SIGINT")
    output = cli_output(proc)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "--resume" in output, output[-3000:]
    assert_stopped_in(stage, out, output)
    finish_cli(run_args(fsdd_dir, out, resume=True))
    assert_same_run(reference_run, out)


@pytest.mark.slow
def test_sigkill_in_each_stage_then_resume_matches_uninterrupted(fsdd_dir, reference_run, tmp_path):
    out = tmp_path / "killed"
    for n, stage in enumerate(STAGES):                 # each start resumes the last and is killed one stage on
        proc = start_paused(run_args(fsdd_dir, out, resume=n > 0), stage, STOP_AT[stage], tmp_path / f"pause{n}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        assert_stopped_in(stage, out, cli_output(proc))
    finish_cli(run_args(fsdd_dir, out, resume=True))
    assert_same_run(reference_run, out)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(fsdd_dir, reference_run, tmp_path):
    """Three starts, each killed at a random pause point of a later stage than the last, the first while it
    waits there, the others a random moment after it went on (the kill then lands wherever the process is:
    a write, an epoch, the next stage, or after its end). What is checked holds whatever the timing."""
    out = tmp_path / "random"
    seed = kill_seed()
    print(f"SIGKILL moments drawn with DDFAD_KILL_SEED={seed} (set it to replay them)")
    draw = random.Random(seed)
    stages = sorted(draw.sample(range(len(STAGES)), 3))
    moments, outcomes = [], []
    for n, index in enumerate(stages):
        stage = STAGES[index]
        step, delay = draw.randint(1, POINTS[stage]), (0.0 if n == 0 else draw.uniform(0.0, 0.5))
        moments.append(f"{stage}:{step}+{delay:.2f}s")
        folder = tmp_path / f"pause{n}"
        proc = start_cli(run_args(fsdd_dir, out, resume=n > 0), pause_at=f"{stage}:{step}:{folder}")
        if wait_reached(proc, folder):
            if delay:
                (folder / pause.GO).touch()
                time.sleep(delay)
            proc.send_signal(signal.SIGKILL)              # a no-op when it has already ended
            proc.wait(timeout=120)
        # the first is killed at its point; a later start may end first (its stage was done, or its moment
        # came after the end), never otherwise
        assert proc.returncode == -signal.SIGKILL or (n > 0 and proc.returncode == 0), cli_output(proc)[-3000:]
        outcomes.append("killed" if proc.returncode == -signal.SIGKILL else "ended")
    print(f"SIGKILL at {moments}: {outcomes}")
    finish_cli(run_args(fsdd_dir, out, resume=True))
    assert_same_run(reference_run, out)


@pytest.mark.slow
def test_sigkill_during_features_then_resume(fsdd_files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in fsdd_files[:24]:
        (folder / path.name).write_bytes(path.read_bytes())
    whole = tmp_path / "whole.pt"
    finish_cli(["features", str(folder), "--out", str(whole), "--quiet", "--checkpoint-every", "3"])
    out = tmp_path / "f.pt"
    args = ["features", str(folder), "--out", str(out), "--quiet", "--checkpoint-every", "3"]
    proc = start_paused(args, "features", 4, tmp_path / "pause")   # 4 shards of 3 files done, 2 surely on disk
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    assert (tmp_path / "f.pt.parts" / "shard_00001.json").is_file() and not out.exists()
    finish_cli(args, expect=2)                           # an unfinished run is never silently restarted
    finish_cli(args + ["--resume"])
    a, b = load_artifact(whole), load_artifact(out)
    assert torch.equal(a["features"], b["features"]) and a["paths"] == b["paths"]


def test_ctrl_c_while_starting_exits_130(monkeypatch, capsys):
    from ddfad_fast.cli import entry

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(entry, "build_parser", interrupted)
    assert entry.main(["run"]) == 130
    assert "interrupted" in capsys.readouterr().err
