"""Shared fixtures. Triton kernels run under the interpreter when there is no GPU.

With DDFAD_REQUIRE_EXT=1 (CI) the session refuses to start when the C++ extension does not load, so
its tests cannot all skip in silence; every run ends with the backends its tests exercised per op.
"""
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before triton is first imported anywhere in the session
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = Path(os.environ.get("DDFAD_FSDD_DIR", ROOT.parent / "shared" / "data" / "fsdd" / "recordings"))


def pytest_sessionstart(session):
    """DDFAD_REQUIRE_EXT=1: stop before collection, naming the import error, when ddfad_fast._C does not load."""
    from ddfad_fast.ops import dispatch
    from ddfad_fast.errors import DDFADError
    try:
        dispatch.check_required_extension()
    except DDFADError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line: per op, the backends whose implementations ran during the session, and those that did not."""
    from ddfad_fast.ops import dispatch, cpu
    parts = []
    for op, labels in dispatch.exercised().items():
        missing = [b for b in dispatch.registered(op) if not any(label.split("(")[0] == b for label in labels)]
        parts.append(f"{op}: {', '.join(labels)}" + (f" (not exercised: {', '.join(missing)})" if missing else ""))
    terminalreporter.write_line("backends exercised: " + ("; ".join(parts) or "none"))
    error = cpu.extension_error()
    if error is not None:
        terminalreporter.write_line(f"C++ extension ddfad_fast._C not loaded ({error}): its tests skipped")


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


@pytest.fixture(scope="module")
def fsdd_clips(fsdd_files):
    """8 real FSDD clips padded / cropped to 1 s at 8 kHz, float64 (8, 8000)."""
    import numpy as np
    import soundfile
    clips = []
    for path in fsdd_files[:8]:
        y, sr = soundfile.read(path, dtype="float64")
        assert sr == 8000
        clips.append(np.pad(y, (0, max(0, 8000 - y.size)))[:8000])
    return np.stack(clips)


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



@pytest.fixture
def tiny_run(tmp_path) -> Path:
    """A finished `ddfad run` folder on a tiny tone dataset (2 clips per class, width-4 ConvNet, 1 iteration),
    for the commands that build on one (continual, nas)."""
    from ddfad_fast.cli import main
    from helpers import tone_dataset
    tone_dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "data"), "--cpc", "2", "--out", str(run), "--width", "4",
                 "--num-experts", "1", "--expert-epochs", "3", "--iterations", "1", "--syn-steps", "2", "--no-compile",
                 "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1", "--no-audio"]) == 0
    return run


@pytest.fixture
def interrupt_call(monkeypatch):
    """``interrupt_call(module, name, n)``: the n-th call of ``module.name`` raises KeyboardInterrupt (as Ctrl-C
    would), the others run it; returns a function that puts the real one back."""
    def arm(module, name: str, stop_at: int):
        real, calls = getattr(module, name), {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, interrupted)
        return lambda: monkeypatch.setattr(module, name, real)
    return arm


@pytest.fixture
def interrupt_epoch(monkeypatch):
    """``interrupt_epoch(n)``: the n-th epoch of the shared training loop (``sgd.sgd_epoch``) changes its
    parameters and raises KeyboardInterrupt half-way (what it changed must not be saved); returns a function
    that undoes it."""
    import ddfad_fast.train.sgd as sgd
    real = sgd.sgd_epoch

    def arm(stop_at: int):
        calls = {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at:
                args[1].add_(1.0)
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(sgd, "sgd_epoch", interrupted)
        return lambda: monkeypatch.setattr(sgd, "sgd_epoch", real)
    return arm


@pytest.fixture(scope="session")
def cli_run(fsdd_dir, tmp_path_factory):
    """`ddfad run` (tiny, one thread) on a 48-clip FSDD folder: (folder of clips, run folder)."""
    from ddfad_fast.cli import main
    from helpers import TINY_RUN, fsdd_subset
    root = tmp_path_factory.mktemp("api")
    fsdd_subset(fsdd_dir, root / "data")
    threads = torch.get_num_threads()
    try:
        assert main(["run", "--data", str(root / "data"), "--cpc", "2", "--out", str(root / "cli"), *TINY_RUN]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "data", root / "cli"


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A sentinel tree of inputs (a class-folder data set, an FSDD-named one, a manifest whose labels are
    ``../../../escaped``, an absolute path into the sentinel tree and 300 characters), and a finished tiny run
    on that manifest (with its audio) and a features file, made once for the hostile-user tests
    (tests/test_adversarial_*.py), which hash its whole tree before and after every case."""
    import os

    from ddfad_fast.cli import main
    from helpers import HOSTILE, SHORT_RUN, World, tones, tree_state
    root = tmp_path_factory.mktemp("adversarial")
    sentinel = root / "sentinel"
    tones(sentinel / "data")
    tones(sentinel / "fsdd", per_class=6, fsdd=True)
    (sentinel / "notes.txt").write_text("not to be touched\n")
    os.symlink("data", sentinel / "link_to_data")
    labels = [label if label is not None else str(sentinel / "abs_escape") for label in HOSTILE]
    rows = ["path,label"] + [f"data/c{c}/{k}.wav,{labels[c]}" for c in range(3) for k in range(8)]
    hostile = sentinel / "hostile.csv"
    hostile.write_text("\n".join(rows) + "\n")
    art = root / "art"
    art.mkdir()
    before = tree_state(root)
    assert main(["run", "--data", str(hostile), "--out", str(art / "run"), *SHORT_RUN]) == 0
    after = tree_state(root, skip=[art / "run"])
    assert main(["features", "--data", str(hostile), "--out", str(art / "features.pt"), "--quiet"]) == 0
    return World(root, sentinel, sentinel / "data", sentinel / "fsdd", hostile, art / "run", art / "features.pt",
                 before, after)
