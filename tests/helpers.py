"""Helpers shared by the test modules (test modules never import from each other)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest
import soundfile
import torch

from ddfad_fast import pause
from ddfad_fast.cli import main
from ddfad_fast.config import ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.data import FeatureSplit
from ddfad_fast.ops import cpu
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


def tiny_trajectories(folder: Path, epochs: int, n_train: int = 96):
    """A 4-class split of ``n_train`` synthetic clips and 2 width-4 experts of ``epochs`` epochs trained into
    ``folder``: (split, Trajectories)."""
    from ddfad_fast.train.experts import load_trajectories, train_experts
    split = make_split(n_train=n_train)
    train_experts(split, ExpertConfig(num_experts=2, epochs=epochs, batch_size=16, lr=0.05,
                                      model=ModelConfig(width=4, depth=2)), folder, progress=False)
    return split, load_trajectories(folder)


def reference_soft_labels(net, traj, x: torch.Tensor, y: torch.Tensor, epoch: int = -1) -> torch.Tensor:
    """Clip by clip: the mean logits of the experts (snapshot ``epoch``) that classify it correctly, or of
    all of them when none does (the rule soft labels start from)."""
    rows = []
    for i in range(len(y)):
        logits = [net.forward(p[epoch], x[i:i + 1])[0] for p in traj.params]
        right = [l for l in logits if int(l.argmax()) == int(y[i])] or logits
        rows.append(torch.stack(right).mean(0))
    return torch.stack(rows).detach()


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


# the CPU fast backends (tests/test_cpu_*.py): each skips where it is not built or installed
CPU_BACKENDS = [
    pytest.param("cpu", marks=pytest.mark.skipif(
        not cpu.extension_loaded(),
        reason="C++ extension ddfad_fast._C not built (pip install --no-build-isolation -e . builds it)")),
    pytest.param("numba", marks=pytest.mark.skipif(not cpu.numba_available(), reason="numba not installed")),
]
CPU_FD_MFCC = {"cpu": cpu.fd_mfcc_cpu, "numba": cpu.fd_mfcc_numba}
CPU_MFCC = {"cpu": cpu.mfcc_cpu, "numba": cpu.mfcc_numba}
CPU_GRIFFIN_LIM = {"cpu": cpu.griffin_lim_cpu, "numba": cpu.griffin_lim_numba}
DTYPES = [torch.float32, torch.float64]


def noise_waves(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """White noise at levels spread over 60 dB, one level per clip."""
    return rng.standard_normal((batch, length)) * 10.0 ** rng.uniform(-3, 0, size=(batch, 1))



# ----------------------------------------------------------------------------- the hostile-user tests
# (tests/test_adversarial_*.py): a sentinel tree hashed before and after every command
ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("adversarial_driver.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
SR = 8000


def short_run(iterations: int = 2) -> list:
    """Flags of a `ddfad run` of a few seconds."""
    return ["--cpc", "1", "--width", "4", "--num-experts", "1", "--expert-epochs", "3", "--iterations", str(iterations),
            "--syn-steps", "2", "--checkpoint-every", "1", "--no-compile", "--num-nets", "1", "--eval-epochs", "2",
            "--full-epochs", "1"]


SHORT_RUN = short_run()
HOSTILE = ("../../../escaped", None, "L" * 300)        # None: an absolute path into the sentinel tree


def tree_state(root: Path, skip=()) -> dict:
    """Every entry under ``root`` (links not followed) but the ``skip`` folders: its type, mode, and for files
    the modification time and a hash of the content, for links the target."""
    state, skip = {}, [os.fspath(s) for s in skip]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entry = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    entry = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(handle.read()).hexdigest())
            else:
                entry = ("other", st.st_mode)
            state[os.path.relpath(path, root)] = entry
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    created = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (created or deleted or changed), f"created {created[:5]}, deleted {deleted[:5]}, changed {changed[:5]}"


def tones(folder: Path, classes: int = 3, per_class: int = 8, fsdd: bool = False) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SR // 4) / SR
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(classes):
        for k in range(per_class):
            phase = rng.uniform(0, 6.3)
            wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t + phase) + 0.01 * rng.standard_normal(t.size)
            if fsdd:
                path = folder / f"{c}_spk_{k}.wav"
            else:
                (folder / f"c{c}").mkdir(exist_ok=True)
                path = folder / f"c{c}" / f"{k}.wav"
            soundfile.write(path, wave.astype(np.float32), SR)


@dataclass
class World:
    root: Path
    sentinel: Path
    data: Path
    fsdd: Path
    hostile: Path
    run: Path
    features: Path
    escaped_before: dict
    escaped_after: dict

    @property
    def experts(self) -> Path:
        return self.run / "experts"

    @property
    def cache(self) -> Path:
        return self.run / "cache"

    @property
    def distilled(self) -> Path:
        return self.run / "cpc1" / "distilled.pt"

    def case(self, name: str) -> Path:
        folder = self.root / "cases" / name
        folder.mkdir(parents=True)
        return folder


def cli(world: World, capsys, argv, rc: int, needle: str = "", out=None, skip=()) -> str:
    """Run ``ddfad argv`` in this process: exit code ``rc``, no traceback, one error line holding ``needle``
    (none when rc is 0), and nothing changed in the test tree outside ``out`` (and ``skip``)."""
    capsys.readouterr()
    leave = [p for p in [out, *skip] if p is not None]
    before = tree_state(world.root, leave)
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    after = tree_state(world.root, leave)
    assert code == rc, (code, captured.err[-3000:])
    assert "Traceback" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    if rc == 0:
        assert not errors, errors
    else:
        assert len(errors) == 1 and needle in errors[0], errors
        assert "weights_only" not in errors[0]
    assert_unchanged(before, after)
    return captured.out + captured.err


def driver(world: World, case: Path, commands, prefix=(), limit_fsize=None, timeout=600) -> list:
    """Run ``commands`` (argv lists) through tests/adversarial_driver.py in one subprocess (after ``prefix``,
    e.g. unshare), each with its exit code and output; the test tree outside ``case`` must not change."""
    cases, results = case / "cases.json", case / "results.json"
    cases.write_text(json.dumps([[str(a) for a in argv] for argv in commands]))
    before = tree_state(world.root, [case])
    preexec = None
    if limit_fsize is not None:
        def preexec():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
    proc = subprocess.run([*prefix, sys.executable, str(DRIVER), str(cases), str(results)], env=ENV,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_unchanged(before, tree_state(world.root, [case]))
    return json.loads(results.read_text())


def assert_one_line(result: dict, rc: int, *needles: str) -> None:
    assert result["rc"] == rc, result
    assert "Traceback" not in result["err"], result["err"]
    errors = [line for line in result["err"].splitlines() if ": error: " in line]
    assert len(errors) == 1, result
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


_NAMESPACES: dict = {}


def namespaces(kind: str) -> list:
    """The command prefix that runs a process in a user namespace (``user``: as an unprivileged user whose
    permissions are the file owner's; ``mount``: as root with its own mounts), or skip."""
    if kind not in _NAMESPACES:
        prefix = (["unshare", "--user"] if kind == "user" else ["unshare", "--user", "--map-root-user", "--mount"])
        ok = shutil.which("unshare") is not None and subprocess.run(
            [*prefix, "true"], capture_output=True).returncode == 0
        _NAMESPACES[kind] = prefix if ok else None
    if _NAMESPACES[kind] is None:
        pytest.skip(f"no {kind} namespaces here (unshare)")
    return _NAMESPACES[kind]

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
