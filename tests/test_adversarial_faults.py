"""The command line against a hostile or careless user, part 3: resource faults (ulimit -f, a full and a
read-only file system, a folder without write permission, in every command), two processes writing one
folder, numbers that pass validation but break a run, and a stage that failed. Every case gives a one-line
error with its documented exit code, and nothing outside the command's output folder changes.

The full, read-only and unwritable file systems use Linux user and mount namespaces (``unshare``); those
cases skip where the namespaces are not available.

Every case runs against the ``world`` fixture (tests/conftest.py): a sentinel tree of inputs and a finished
tiny run, whose whole tree is hashed before and after each case (tests/helpers.py: ``cli``, ``driver``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddfad_fast.cli import main
from ddfad_fast.errors import FileFormatError, NonFiniteError
from ddfad_fast.io import load_artifact, save_artifact
from helpers import (DRIVER, ENV, SHORT_RUN, World, assert_one_line, assert_unchanged, cli, driver, namespaces,
                     no_temporary_files, short_run, tree_state)

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- resource faults

def test_file_size_limit_gives_one_line_and_keeps_the_last_checkpoint(world):
    case = world.case("ulimit")
    out = case / "distill"
    base = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", out,
            "--cache", world.cache, "--quiet", "--no-compile", "--syn-steps", "2", "--checkpoint-every", "2"]
    first, = driver(world, case, [base + ["--iterations", "2"]])
    assert first["rc"] == 0, first
    saved = (out / "checkpoint.pt").read_bytes()
    features, resumed = driver(world, case, [["features", world.data, "--out", case / "f.pt", "--quiet"],
                                             base + ["--iterations", "4", "--resume"]], limit_fsize=16 * 1024)
    assert_one_line(features, 1, "f.pt", "file size limit (ulimit -f)")
    assert not (case / "f.pt").exists() and no_temporary_files(case)
    assert_one_line(resumed, 1, "file size limit (ulimit -f)", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == saved and no_temporary_files(out)    # the last checkpoint kept
    done, = driver(world, case, [base + ["--iterations", "4", "--resume"]])
    assert done["rc"] == 0 and len(load_artifact(out / "distilled.pt")["history"]["loss"]) == 4


def _all_commands(world: World, base: Path) -> list:
    """One command line per command, each writing into its own (existing, empty) folder under ``base``."""
    def own(name):
        (base / name).mkdir(parents=True, exist_ok=True)
        return base / name
    return [
        ["features", world.data, "--out", own("features_file") / "f.pt", "--quiet"],
        ["features", "--data", world.hostile, "--store", own("features_store"), "--quiet"],
        ["reconstruct", world.distilled, "--out", own("reconstruct"), "--n-iter", "1"],
        ["data", "fetch", "fsdd", "--to", own("fetch")],
        ["data", "info", world.hostile, "--cache", own("info")],
        ["experts", "--data", world.hostile, "--out", own("experts"), "--num-experts", "1", "--epochs", "1",
         "--cache", world.cache, "--no-compile", "--width", "4"],
        ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", own("distill"),
         "--cache", world.cache, "--quiet", "--no-compile", "--iterations", "1"],
        ["evaluate", world.distilled, "--data", world.hostile, "--cache", world.cache, "--out", own("evaluate"),
         "--num-nets", "1", "--epochs", "1", "--no-compile"],
        ["run", "--data", world.hostile, "--out", own("run"), *SHORT_RUN],
        ["continual", "--run", world.run, "--out", own("continual"), "--tasks", "2", "--seeds", "1",
         "--protocols", "gdumb"],
        ["nas", "--run", world.run, "--out", own("nas"), "--limit", "2", "--proxy-steps", "1", "--full-epochs", "1",
         "--quiet"],
    ]


def _chmod_tree(folder: Path, mode: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(mode)


def test_unwritable_output_folders_in_every_command(world):
    prefix = namespaces("user") if os.geteuid() == 0 else []
    case = world.case("unwritable")
    commands = _all_commands(world, case / "ro")
    _chmod_tree(case / "ro", 0o555)
    try:
        results = driver(world, case, commands, prefix=prefix)
    finally:
        _chmod_tree(case / "ro", 0o755)
    for result in results:
        assert_one_line(result, 1, "permission denied")
        assert str(case / "ro") in result["err"]
    assert not [p for p in (case / "ro").rglob("*") if p.is_file()]


def test_read_only_and_full_file_systems(world):
    prefix = namespaces("mount")
    case = world.case("filesystems")
    ro, full = case / "ro", case / "full"
    commands = _all_commands(world, ro)
    full.mkdir()
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
              f"mount -t tmpfs -o size=96k tmpfs {full} && "
              f"exec {sys.executable} {DRIVER} {case / 'cases.json'} {case / 'results.json'}")
    commands += [["features", world.data, "--out", full / "f.pt", "--quiet"],
                 ["run", "--data", world.hostile, "--out", full / "run", *SHORT_RUN]]
    cases = case / "cases.json"
    cases.write_text(json.dumps([[str(a) for a in argv] for argv in commands]))
    before = tree_state(world.root, [case])
    proc = subprocess.run([*prefix, "sh", "-c", script], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_unchanged(before, tree_state(world.root, [case]))
    results = json.loads((case / "results.json").read_text())
    for result in results[:-2]:
        assert_one_line(result, 1, "read-only file system")
    for result in results[-2:]:
        assert_one_line(result, 1, "no space left on the device", "--resume")


# ----------------------------------------------------------------------------- one writer per folder

def test_a_second_process_writing_the_same_folder_is_refused(world, capsys):
    case = world.case("lock")
    out = case / "out"
    argv = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", out,
            "--cache", world.cache, "--quiet", "--no-compile", "--syn-steps", "2", "--iterations", "100000",
            "--checkpoint-every", "0"]
    first = subprocess.Popen([sys.executable, "-m", "ddfad_fast.cli", *map(str, argv)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "distill.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first distillation did not start"
            time.sleep(0.05)
        cli(world, capsys, argv, 1, f"in use by process {first.pid}", out=out)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    from ddfad_fast.outputs import hold
    with hold(out):                      # the kernel released the lock of the killed process
        pass


# ----------------------------------------------------------------------------- numbers that break a run

def test_numbers_that_pass_parsing_but_would_break_the_run(world, capsys):
    case = world.case("numbers")
    distill = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--cache", world.cache,
               "--quiet", "--syn-steps", "2", "--no-compile"]
    for value in ("inf", "nan"):
        out = case / f"lr_{value}"
        cli(world, capsys, distill + ["--out", out, "--lr-data", value], 2, "lr_data must be a finite number", out=out)
    out = case / "diverges"
    cli(world, capsys, distill + ["--out", out, "--lr-data", "1e30", "--iterations", "4", "--checkpoint-every", "1"],
        1, "became NaN or infinite", out=out)
    assert not (out / "distilled.pt").exists()
    kept = load_artifact(out / "checkpoint.pt", kind="distill_checkpoint")          # finite (schema-checked)
    assert kept["iteration"] >= 1
    cli(world, capsys, distill + ["--out", case / "seed", "--seed", str(10 ** 23)], 2, "seed must be in",
        out=case / "seed")
    cli(world, capsys, distill + ["--out", case / "steps", "--syn-steps", str(10 ** 12)], 2, "lower --syn-steps",
        out=case / "steps")
    from ddfad_fast.cli.guard import out_of_memory
    assert "670.6 GiB failed" in out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "720000000000 bytes. Error code 12 (Cannot allocate memory)"))
    assert out_of_memory(RuntimeError("a bug")) is None
    for duration, needle in (("1e9", "more than this machine's"), ("inf", "finite number of seconds"),
                             ("nan", "finite number of seconds"), ("1e-9", "shorter than one sample")):
        cli(world, capsys, ["features", world.data, "--out", case / "d.pt", "--duration", duration, "--quiet"], 2,
            needle, out=case / "d.pt.parts")
    cli(world, capsys, ["features", world.data, "--out", case / "w.pt", "--workers", "-1", "--quiet"], 2,
        "--workers must be >= 0", out=case / "w.pt.parts")
    cli(world, capsys, ["experts", "--data", world.hostile, "--out", case / "e", "--workers", "-1"], 2,
        "--workers must be >= 0", out=case / "e")
    cli(world, capsys, ["nas", "--run", world.run, "--out", case / "nas", "--limit", "0"], 2, "--limit must be >= 2",
        out=case / "nas")
    cli(world, capsys, ["evaluate", "--data", world.hostile, "--full", "--max-memory", "0.01"], 2, "--max-memory")


def test_nan_in_training_stops_with_the_last_finite_state(tmp_path):
    from ddfad_fast.config import ExpertConfig, ModelConfig, EvalConfig
    from ddfad_fast.data import FeatureSplit
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.train.evaluate import evaluate_training_set
    from ddfad_fast.train.experts import train_experts
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, 20, 101, generator=gen), torch.arange(12) % 3
    split = FeatureSplit(x, y, x[:3].clone(), y[:3].clone(), ["a", "b", "c"], FeatureConfig())
    model = ModelConfig(width=4, depth=1)
    config = ExpertConfig(num_experts=1, epochs=3, batch_size=4, lr=1e30, model=model, compile=False)
    with pytest.raises(NonFiniteError, match="expert 0's training"):
        train_experts(split, config, tmp_path / "experts", progress=False)
    assert not (tmp_path / "experts" / "expert_000.pt").exists()
    with pytest.raises(NonFiniteError, match="evaluation training"):
        evaluate_training_set(x, y, x[:3], y[:3], model, EvalConfig(num_nets=1, epochs=2, batch_size=4, compile=False),
                              lr=1e30)
    with pytest.raises(FileFormatError, match="'params' holds"):
        save_artifact(tmp_path / "t.pt", "trajectory", {"params": torch.full((2, 3), float("nan"))},
                      config={"features": FeatureConfig().to_dict(), "in_shape": [3, 20, 101], "num_classes": 3,
                              "expert": {}})
        load_artifact(tmp_path / "t.pt", kind="trajectory")


# ----------------------------------------------------------------------------- a stage that failed

def test_a_failed_stage_does_not_print_its_old_accuracies(world, capsys, monkeypatch):
    import ddfad_fast.train.distill as distill_module
    case = world.case("failed_stage")
    run = case / "run"
    shutil.copytree(world.run, run, symlinks=True)

    def broken(*args, **kwargs):
        raise RuntimeError("the distillation broke")

    monkeypatch.setattr(distill_module, "distill", broken)
    argv = ["run", "--data", world.hostile, "--out", run, "--resume", *short_run(iterations=3)]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 1
    printed = capsys.readouterr().out
    assert "FAILED stage cpc1" in printed and "CPC   1" not in printed
    assert "cpc1" not in json.loads((run / "report.json").read_text())["accuracy"]
