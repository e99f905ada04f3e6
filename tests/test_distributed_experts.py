"""``ddfad experts`` under torchrun: ranks train disjoint experts into one folder, the same files as one process.

Two CPU processes join a gloo process group (spawned here, or started by ``torch.distributed.run`` through
the real CLI); expert k is trained by rank k % 2 with seed ``seed + k``, so every trajectory file equals the
single-process one tensor for tensor. A rank that fails makes every rank raise (none waits forever), and
``resume`` (the same launch again) finishes the set where an uninterrupted run ends.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import ddfad_fast.distributed as distributed
import ddfad_fast.train.experts as experts
import ddfad_fast.train.sgd as sgd
from ddfad_fast.config import Augment
from ddfad_fast.io import load_artifact
from helpers import EXPERT_CONFIG as CFG, make_split

WORLD = 2
CONFIG = CFG.replace(num_experts=3, epochs=2, compile=False, augment=Augment(max_shift=2, time_mask=3, freq_mask=2))
pytestmark = pytest.mark.usefixtures("single_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(fn, *args, **kwargs) -> dict:
    """``fn``'s outcome as JSON: the paths it returned or the error it raised."""
    try:
        return {"paths": [str(p) for p in fn(*args, **kwargs)]}
    except BaseException as exc:  # noqa: BLE001 - the test reads it
        return {"error": type(exc).__name__, "message": str(exc)}


def _rank_main(rank: int, port: int, job: str, folder: str) -> None:
    """One spawned rank: join the gloo group as torchrun would set it up, run ``job``, write what happened."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    distributed.init("experts", timeout_s=90)
    folder = Path(folder)
    split, out = make_split(), {}
    try:
        if job == "train":
            out["plain"] = _call(experts.train_experts, split, CONFIG, folder / "ranks", progress=False)
            out["ensemble"] = _call(experts.train_experts, split, CONFIG.replace(ensemble=True),
                                    folder / "ranks_ensemble", progress=False)
        elif job == "fail":
            if rank == 0:          # rank 0's second epoch (expert 0, after its first checkpoint) dies half-way
                real, calls = sgd.sgd_epoch, {"n": 0}

                def dies(*args, **kwargs):
                    calls["n"] += 1
                    if calls["n"] == 2:
                        args[1].add_(1.0)
                        raise RuntimeError("rank 0 died")
                    return real(*args, **kwargs)
                sgd.sgd_epoch = dies
            out["fail"] = _call(experts.train_experts, split, CONFIG, folder / "ranks", progress=False)
        elif job == "resume":
            out["again"] = _call(experts.train_experts, split, CONFIG, folder / "ranks", progress=False)
            out["resume"] = _call(experts.train_experts, split, CONFIG, folder / "ranks", resume=True, progress=False)
    finally:
        distributed.shutdown()
        out["threads_left"] = _thread_names()
        (folder / f"{job}_rank{rank}.json").write_text(json.dumps(out))


def _thread_names() -> list:
    """The names of this process's threads (Linux; empty elsewhere)."""
    tasks = Path("/proc/self/task")
    return [(task / "comm").read_text().strip() for task in tasks.iterdir()] if tasks.is_dir() else []


def spawn(job: str, folder: Path, limit_s: float = 120.0) -> list:
    """Run ``job`` on 2 ranks; what each rank saw. A rank still running after ``limit_s`` fails the test."""
    context = mp.spawn(_rank_main, args=(free_port(), job, str(folder)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + limit_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for proc in context.processes:
                proc.kill()
            pytest.fail(f"ranks of {job!r} still running after {limit_s:.0f} s")
    return [json.loads((folder / f"{job}_rank{r}.json").read_text()) for r in range(WORLD)]


def assert_same_files(a: Path, b: Path, exact: bool = True) -> None:
    """Both folders hold the same expert files, every tensor equal (``exact``) or within float32 rounding."""
    names = sorted(p.name for p in a.glob("expert_*"))
    assert names == sorted(p.name for p in b.glob("expert_*")) and names
    for name in names:
        x, y = load_artifact(a / name), load_artifact(b / name)
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                if exact:
                    assert torch.equal(x[key], y[key]), (name, key)
                else:
                    scale = float(x[key].abs().max())
                    torch.testing.assert_close(y[key], x[key], rtol=1e-5, atol=1e-5 * scale)
            elif exact or key not in ("train_loss", "monitor_acc", "config"):
                assert x[key] == y[key], (name, key)


def test_ranks_train_disjoint_experts_equal_to_one_process(tmp_path):
    """3 experts on 2 ranks (0 and 2 on rank 0, 1 on rank 1) into one folder: each file equals the single
    process's, tensor for tensor; with ensemble=True each rank trains its own together (float32 rounding).
    Leaving the group joins gloo's worker threads (torch.func.grad imports torch._dynamo, which held the group
    alive when imported after it was made, and a worker left running could abort the exiting process)."""
    seen = spawn("train", tmp_path)
    for rank in seen:
        assert not [name for name in rank["threads_left"] if "gloo" in name], rank["threads_left"]
    experts.train_experts(make_split(), CONFIG, tmp_path / "one", progress=False)
    experts.train_experts(make_split(), CONFIG.replace(ensemble=True), tmp_path / "one_ensemble", progress=False)
    for mode, folder in (("plain", "ranks"), ("ensemble", "ranks_ensemble")):
        for rank in seen:
            assert rank[mode]["paths"] == [str(tmp_path / folder / f"expert_{k:03d}.pt") for k in range(3)]
    assert_same_files(tmp_path / "one", tmp_path / "ranks")
    assert_same_files(tmp_path / "one_ensemble", tmp_path / "ranks_ensemble", exact=False)
    assert not list(tmp_path.glob("*/*.partial.pt")) and not list(tmp_path.glob("*/.*.tmp*"))


def test_failed_rank_stops_every_rank_and_resume_finishes_the_set(tmp_path):
    """Rank 0 dies in its second epoch: it raises its error, rank 1 (expert 1 done) a DDFADError, none hangs.
    The same launch again refuses the existing files on every rank; with resume the unfinished experts are
    dealt out again (expert 0 from rank 0's checkpoint, expert 2 now on rank 1) and the set equals an
    uninterrupted run's."""
    seen = spawn("fail", tmp_path)
    assert seen[0]["fail"] == {"error": "RuntimeError", "message": "rank 0 died"}
    assert seen[1]["fail"]["error"] == "DDFADError" and "--resume" in seen[1]["fail"]["message"]
    ranks = tmp_path / "ranks"
    assert sorted(p.name for p in ranks.glob("expert_*")) == ["expert_000.partial.pt", "expert_001.pt"]

    seen = spawn("resume", tmp_path)
    for rank in seen:
        assert rank["again"]["error"] == "ParameterError" and "expert_001.pt exists" in rank["again"]["message"]
        assert rank["resume"]["paths"] == [str(ranks / f"expert_{k:03d}.pt") for k in range(3)]
    experts.train_experts(make_split(), CONFIG, tmp_path / "one", progress=False)
    assert_same_files(tmp_path / "one", ranks)


def write_tiny_wavs(folder: Path) -> Path:
    """40 one-second FSDD-named tones ({label}_{speaker}_{index}.wav, index 0-4 test): 2 classes, 2 speakers."""
    import soundfile as sf
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for label, freq in (("lo", 300.0), ("hi", 1200.0)):
        for speaker, shift in (("ann", 1.0), ("bob", 1.3)):
            for index in range(10):
                wave = 0.3 * np.sin(2 * np.pi * freq * shift * t) + 0.05 * rng.standard_normal(len(t))
                sf.write(folder / f"{label}_{speaker}_{index}.wav", wave.astype(np.float32), 8000)
    return folder


def test_torchrun_cli_equals_one_process(tmp_path):
    """``torch.distributed.run --nproc-per-node 2 -m ddfad_fast.cli experts ...`` (gloo, one thread a rank)
    writes the files ``ddfad experts`` writes in one process; rank 0 alone prints."""
    from ddfad_fast.cli import main
    data = write_tiny_wavs(tmp_path / "wavs")
    cache = tmp_path / "cache"           # filled by the single-process run; the ranks read it
    args = ["--data", str(data), "--cache", str(cache), "--num-experts", "3", "--epochs", "1", "--width", "4",
            "--no-compile", "--device", "cpu", "--threads", "1"]
    assert main(["experts", "--out", str(tmp_path / "one")] + args) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD),
                           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}",
                           "-m", "ddfad_fast.cli", "experts", "--out", str(tmp_path / "ranks")] + args,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("3 expert trajectories in") == 1 and "(2 processes)" in proc.stdout
    assert_same_files(tmp_path / "one", tmp_path / "ranks")

