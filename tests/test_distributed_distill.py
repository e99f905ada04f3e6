"""Distillation with K trajectories per update, in one process and split over processes (gloo on the CPU):
K = 2 is the mean of two unrolls, 2 processes equal 1 process with the same K, exact resume, failures and
divergence stop every process together, and the CLI under torchrun."""
import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ddfad_fast.cli import main
from ddfad_fast.config import Augment, DistillConfig, ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.data import FeatureSplit
from ddfad_fast.train.distill import ALPHA_FLOOR, CHECKPOINT_NAME, distill
from ddfad_fast.train.distill_state import initial_state
from ddfad_fast.errors import FileFormatError, ParameterError
from ddfad_fast.train.experts import load_trajectories, train_experts
from ddfad_fast.io import load_artifact
from ddfad_fast.train.models import build_model
from ddfad_fast.train.unroll import make_plan, unroll

ROOT = Path(__file__).resolve().parents[1]
C, SHAPE = 3, (3, 4, 8)
MODEL = ModelConfig(width=4, depth=1)
EXPERTS = ExpertConfig(num_experts=3, epochs=4, batch_size=8, lr=0.05, model=MODEL, compile=False)
CONFIG = DistillConfig(cpc=2, syn_steps=3, expert_epochs=2, max_start_epoch=2, iterations=4, lr_data=10.0,
                       lr_alpha=1e-3, batch_syn=4, augment=Augment(max_shift=2, time_mask=3, freq_mask=1),
                       compile=False, checkpoint_every=1, eval_every=1, labels="soft", trajectories_per_iteration=2)
TIMEOUT_S = 120

pytestmark = pytest.mark.usefixtures("single_thread")


def _split() -> FeatureSplit:
    gen = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(C, *SHAPE, generator=gen)
    y = torch.arange(24) % C
    x = means[y] + torch.randn(24, *SHAPE, generator=gen)
    return FeatureSplit(x, y, x[:6], y[:6], [str(i) for i in range(C)], FeatureConfig(), [])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny experts trained on random features; the float64 training set."""
    folder = tmp_path_factory.mktemp("dist_experts")
    split = _split()
    train_experts(split, EXPERTS, folder / "experts", progress=False)
    torch.save({"x": split.x_train.double(), "y": split.y_train}, folder / "data.pt")
    return folder, split.x_train.double(), split.y_train, load_trajectories(folder / "experts")


def _recorder(steps):
    def record(xs, ys, alpha):
        steps.append((xs, ys, alpha))
        return {"mean": 0.0, "std": 0.0}
    return record


def _same(a, b, exact=True):
    close = torch.equal if exact else (lambda u, v: torch.allclose(u, v, rtol=0, atol=1e-10))
    assert close(a.features, b.features) and abs(a.alpha - b.alpha) <= (0 if exact else 1e-12)
    assert close(a.soft_labels, b.soft_labels)
    for key in ("expert", "start_epoch"):
        assert a.history[key] == b.history[key], key
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=0 if exact else 1e-10, abs=0)


def test_k2_is_the_mean_of_two_unrolls(setup):
    """One update with K = 2 == one momentum step on the mean of two unrolls drawn by hand (float64)."""
    _, x, y, traj = setup
    config = CONFIG.replace(iterations=1)
    result = distill(x, y, traj, config, progress=False)
    net = build_model(MODEL, SHAPE, C)
    state, labels = initial_state(x, y, net, traj, config)
    gen = torch.Generator()
    gen.set_state(state.generator_state)
    outs, experts, starts = [], [], []
    for _ in range(2):
        k = int(torch.randint(len(traj.params), (1,), generator=gen))
        t = int(torch.randint(config.max_start_epoch + 1, (1,), generator=gen))
        plan = make_plan(len(labels), config.batch_syn, config.syn_steps, gen, True)
        theta0, target = traj.params[k][t].double(), traj.params[k][t + config.expert_epochs].double()
        outs.append(unroll(net, state.x, state.y, state.alpha, theta0, target, plan, "naive", config.augment))
        experts.append(k)
        starts.append(t)
    grad_x = (outs[0].grad_x + outs[1].grad_x) / 2
    grad_y = (outs[0].grad_y + outs[1].grad_y) / 2
    grad_alpha = (outs[0].grad_alpha + outs[1].grad_alpha) / 2
    torch.testing.assert_close(result.features, state.x - config.lr_data * grad_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.soft_labels, state.y - config.lr_labels * grad_y, rtol=1e-10, atol=1e-12)
    alpha = max(float(state.alpha - config.lr_alpha * grad_alpha), ALPHA_FLOOR * config.alpha_init)
    assert result.alpha == pytest.approx(alpha, rel=1e-12)
    assert result.history["loss"] == [pytest.approx(float(outs[0].loss + outs[1].loss) / 2, rel=1e-12)]
    assert result.history["expert"] == [experts] and result.history["start_epoch"] == [starts]
    # K = 1 keeps plain ints in the history
    single = distill(x, y, traj, config.replace(trajectories_per_iteration=1), progress=False)
    assert isinstance(single.history["expert"][0], int) and isinstance(single.history["start_epoch"][0], int)


def test_k2_resume_is_exact(setup, tmp_path):
    """K = 2, float32: Ctrl-C during iteration 3, then --resume, ends bit for bit where an uninterrupted run
    ends; a checkpoint made with K = 2 is refused for K = 3."""
    _, x, y, traj = setup
    x = x.float()
    full = distill(x, y, traj, CONFIG, out_dir=tmp_path / "full", evaluate_fn=_recorder([]), progress=False)
    calls = []

    def interrupting(xs, ys, alpha):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {"mean": 0.0, "std": 0.0}

    with pytest.raises(KeyboardInterrupt):
        distill(x, y, traj, CONFIG, out_dir=tmp_path / "cut", evaluate_fn=interrupting, progress=False)
    assert load_artifact(tmp_path / "cut" / CHECKPOINT_NAME, kind="distill_checkpoint")["iteration"] == 2
    resumed = distill(x, y, traj, CONFIG, out_dir=tmp_path / "cut", resume=True, evaluate_fn=_recorder([]),
                      progress=False)
    _same(resumed, full)
    assert [s["trajectories_per_iteration"] for s in resumed.history["sessions"]] == [2, 2]
    with pytest.raises(FileFormatError, match="different config"):
        distill(x, y, traj, CONFIG.replace(trajectories_per_iteration=3), out_dir=tmp_path / "cut", resume=True,
                progress=False)


def test_refuses_fewer_trajectories_than_processes(setup, monkeypatch):
    _, x, y, traj = setup
    with pytest.raises(ParameterError, match="trajectories_per_iteration must be >= 1"):
        distill(x, y, traj, CONFIG.replace(trajectories_per_iteration=0), progress=False)
    from ddfad_fast import distributed
    monkeypatch.setattr(distributed, "world_size", lambda: 3)    # (no process group: nothing is sent)
    with pytest.raises(ParameterError, match=r"trajectories_per_iteration=2 is less than the 3 processes"):
        distill(x, y, traj, CONFIG, progress=False)


def test_cli_default_is_one_trajectory_per_process(monkeypatch):
    from ddfad_fast.cli.distill import add_arguments, distill_config
    from ddfad_fast.presets import get_preset
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", "d", "--experts", "e", "--cpc", "1", "--out", "o"]

    def k(extra):
        return distill_config(get_preset("cpu-small"), parser.parse_args(base + extra), 50).trajectories_per_iteration

    assert k([]) == 1 and k(["--trajectories-per-iteration", "3"]) == 3
    from ddfad_fast import distributed
    monkeypatch.setattr(distributed, "world_size", lambda: 4)    # as in a process group of 4
    assert k([]) == 4 and k(["--trajectories-per-iteration", "6"]) == 6


# ----------------------------------------------------------------------------- two processes (gloo)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    """One of ``world`` processes, joined as torchrun would join it (environment + distributed.init)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import ddfad_fast.train.distill as distill_mod
    from ddfad_fast import distributed
    from ddfad_fast.train.distill import DistillationDiverged
    from ddfad_fast.errors import DDFADError
    folder = Path(folder)
    distributed.init("distill", torch.device("cpu"), timeout_s=60)
    try:
        data = torch.load(folder / "data.pt", weights_only=True)
        x, y = data["x"], data["y"]
        traj = load_trajectories(folder / "experts")
        steps = []
        full = distill(x, y, traj, CONFIG, out_dir=folder / "two", evaluate_fn=_recorder(steps), progress=False)
        # a shorter run, extended by a resumed one (every rank resumes from rank 0's checkpoint)
        distill(x, y, traj, CONFIG.replace(iterations=2), out_dir=folder / "cut", progress=False)
        resumed = distill(x, y, traj, CONFIG, out_dir=folder / "cut", resume=True, progress=False)
        outcome = {}
        # every failure stops every rank: bad settings, a diverged loss, an unroll failing on rank 1 only,
        # a checkpoint that rank 0 alone refuses
        for name, run in [
                ("k1", lambda: distill(x, y, traj, CONFIG.replace(trajectories_per_iteration=1), progress=False)),
                ("diverged", lambda: distill(x, y, traj, CONFIG.replace(lr_data=1e300), progress=False)),
                ("exists", lambda: distill(x, y, traj, CONFIG, out_dir=folder / "two", progress=False))]:
            try:
                run()
                outcome[name] = None
            except DDFADError as exc:
                outcome[name] = type(exc).__name__
        real = distill_mod.unroll

        def failing(*args, **kwargs):
            if distributed.rank() == 1:
                raise RuntimeError("out of memory on rank 1")
            return real(*args, **kwargs)

        distill_mod.unroll = failing
        try:
            distill(x, y, traj, CONFIG, progress=False)
            outcome["unroll"] = None
        except (RuntimeError, DDFADError) as exc:
            outcome["unroll"] = f"{type(exc).__name__}: {exc}"
        finally:
            distill_mod.unroll = real
        assert isinstance(DistillationDiverged("x"), DDFADError)
        torch.save({"full": (full.features, full.alpha, full.soft_labels, full.history), "steps": steps,
                    "resumed": (resumed.features, resumed.alpha, resumed.soft_labels, resumed.history),
                    "outcome": outcome}, folder / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def _spawn(world: int, folder: Path) -> None:
    context = mp.start_processes(_worker, args=(world, _free_port(), str(folder)), nprocs=world, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} processes did not finish in {TIMEOUT_S} s (a rank waits for another)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()


def test_two_processes_equal_one(setup):
    """2 processes (gloo), K = 2, float64: after every update the synthetic data, alpha and soft labels equal
    those of 1 process with K = 2 (to 1e-10); a resumed 2-process run too; failures stop both ranks."""
    folder, x, y, traj = setup
    steps = []
    one = distill(x, y, traj, CONFIG, evaluate_fn=_recorder(steps), progress=False)
    _spawn(2, folder)
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(ranks[0]["steps"]) == CONFIG.iterations and ranks[1]["steps"] == []     # rank 0 evaluates
    for (xa, ya, aa), (xb, yb, ab) in zip(ranks[0]["steps"], steps):
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-10)
        torch.testing.assert_close(ya, yb, rtol=0, atol=1e-10)
        assert abs(aa - ab) <= 1e-12
    for r in ranks:
        for key in ("full", "resumed"):
            features, alpha, soft, history = r[key]
            torch.testing.assert_close(features, one.features, rtol=0, atol=1e-10)
            torch.testing.assert_close(soft, one.soft_labels, rtol=0, atol=1e-10)
            assert abs(alpha - one.alpha) <= 1e-12
            assert history["expert"] == one.history["expert"] and history["start_epoch"] == one.history["start_epoch"]
            assert history["loss"] == pytest.approx(one.history["loss"], rel=1e-10)
    sessions = ranks[0]["resumed"][3]["sessions"]
    assert [s["processes"] for s in sessions] == [2, 2] and sessions[1]["start_iteration"] == 2
    saved = load_artifact(folder / "two" / CHECKPOINT_NAME, kind="distill_checkpoint")
    assert saved["iteration"] == CONFIG.iterations
    torch.testing.assert_close(saved["x"], one.features, rtol=0, atol=1e-10)
    for r in ranks:
        outcome = r["outcome"]
        assert outcome["k1"] == "ParameterError" and outcome["diverged"] == "DistillationDiverged"
        assert outcome["exists"] == "ParameterError"
    assert ranks[1]["outcome"]["unroll"] == "RuntimeError: out of memory on rank 1"
    assert ranks[0]["outcome"]["unroll"].startswith("DDFADError: distillation stopped at iteration 1")


# ----------------------------------------------------------------------------- the CLI under torchrun

def test_cli_under_torchrun(tmp_path):
    """``torchrun --nproc-per-node 2 -m ddfad_fast.cli distill`` (K defaults to 2) writes what one process
    with ``--trajectories-per-iteration 2`` writes; rank 0 alone prints."""
    from helpers import tone_dataset
    data, experts = tmp_path / "data", tmp_path / "experts"
    tone_dataset(data, per_class=10, seconds=0.5)
    assert main(["experts", "--data", str(data), "--out", str(experts), "--num-experts", "2", "--epochs", "3",
                 "--width", "4", "--no-compile", "--threads", "1"]) == 0
    args = ["--data", str(data), "--experts", str(experts), "--cpc", "1", "--iterations", "2", "--syn-steps", "2",
            "--no-compile", "--quiet", "--eval-every", "0", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"localhost:{_free_port()}", "-m", "ddfad_fast.cli", "distill",
               "--out", str(tmp_path / "two"), "--cache", str(tmp_path / "cache2")] + args   # a store built by 2
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("distilled 3 clips") == 1 and "2 trajectories per iteration on 2 processes" in done.stdout
    assert main(["distill", "--out", str(tmp_path / "one"), "--trajectories-per-iteration", "2"] + args) == 0
    two, one = (torch.load(tmp_path / name / "distilled.pt", weights_only=True) for name in ("two", "one"))
    torch.testing.assert_close(two["features"], one["features"], rtol=1e-5, atol=1e-5)
    assert two["history"]["expert"] == one["history"]["expert"] and len(two["history"]["expert"][0]) == 2
    assert two["config"]["distill"]["trajectories_per_iteration"] == 2


def test_torchrun_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    """A 2-process `distill` killed (SIGKILL to the whole launch) after its first checkpoint, then launched
    again with --resume, ends where an uninterrupted 2-process launch ends."""
    import signal
    import time
    from helpers import tone_dataset
    data, experts = tmp_path / "data", tmp_path / "experts"
    tone_dataset(data, per_class=10, seconds=0.5)
    assert main(["experts", "--data", str(data), "--out", str(experts), "--num-experts", "2", "--epochs", "3",
                 "--width", "4", "--no-compile", "--threads", "1", "--cache", str(tmp_path / "cache")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def launch(out: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
             "--rdzv-endpoint", f"localhost:{_free_port()}", "-m", "ddfad_fast.cli", "distill", "--data", str(data),
             "--experts", str(experts), "--cpc", "1", "--iterations", "40", "--syn-steps", "2", "--no-compile",
             "--quiet", "--eval-every", "0", "--checkpoint-every", "2", "--cache", str(tmp_path / "cache"),
             "--out", str(out), *extra], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

    whole = launch(tmp_path / "whole")
    assert whole.wait(timeout=TIMEOUT_S) == 0, whole.stderr.read()[-3000:]
    killed = launch(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert killed.poll() is None, "the launch ended before the kill"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert not (tmp_path / "killed" / "distilled.pt").exists()
    resumed = launch(tmp_path / "killed", "--resume")
    assert resumed.wait(timeout=TIMEOUT_S) == 0, resumed.stderr.read()[-3000:]
    a, b = (torch.load(tmp_path / name / "distilled.pt", weights_only=True) for name in ("whole", "killed"))
    assert torch.equal(a["features"], b["features"]) and torch.equal(torch.as_tensor(a["alpha"]),
                                                                       torch.as_tensor(b["alpha"]))
    assert a["history"]["loss"] == b["history"]["loss"]
