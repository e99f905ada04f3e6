"""Config round trips, the backend dispatcher, artifact files and the CLI frame."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ddfad_fast.ops import dispatch
from ddfad_fast import save_audio
from ddfad_fast.cli import main as cli_main
from ddfad_fast.config import DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.errors import BackendFallbackWarning, BackendUnavailableError, FileFormatError, ParameterError
from ddfad_fast.io import FORMAT_VERSION, atomic_write_json, load_artifact, save_artifact


@pytest.mark.parametrize("cls", [FeatureConfig, ExpertConfig, DistillConfig, EvalConfig, ModelConfig])
def test_config_round_trip(cls):
    cfg = cls()
    assert cls.from_dict(cfg.to_dict()) == cfg


def test_config_nested_and_unknown_fields():
    cfg = ExpertConfig(model=ModelConfig(width=32))
    back = ExpertConfig.from_dict(cfg.to_dict())
    assert back.model.width == 32 and isinstance(back.model, ModelConfig)
    with pytest.raises(ParameterError, match="bogus"):
        FeatureConfig.from_dict({"bogus": 1})


def test_feature_presets_and_validation():
    fsdd = FeatureConfig.fsdd().validate()
    assert (fsdd.n_frames(fsdd.fixed_length), fsdd.n_freqs) == (101, 129)
    s16 = FeatureConfig.speech16k().validate()
    assert s16.n_frames(s16.fixed_length) == 126
    for bad in (dict(win_length=300), dict(n_mfcc=41), dict(window="boxcar"), dict(delta_width=4),
                dict(fmax=5000.0), dict(preemphasis=1.0), dict(hop_length=0)):
        with pytest.raises(ParameterError):
            FeatureConfig(**bad).validate()


@pytest.fixture
def toy_op():
    name = "_toy_op"
    dispatch.register(name, "reference", lambda x: ("ref", x), devices=("cpu", "cuda"))
    dispatch.register(name, "numba", lambda x: ("numba", x), devices=("cpu",))
    dispatch.register(name, "cpu", lambda x: ("cpu", x), devices=("cpu",), available=lambda: False)
    yield name
    dispatch._REGISTRY.pop(name)


def test_dispatch_order_and_forcing(toy_op, monkeypatch):
    monkeypatch.delenv("DDFAD_BACKEND", raising=False)
    monkeypatch.setattr(dispatch, "_WARNED", set())
    assert dispatch.candidates(toy_op, "cpu") == ["numba", "reference"]
    with pytest.warns(BackendFallbackWarning, match="'cpu'"):       # passing over the unavailable 'cpu' is said
        assert dispatch.get(toy_op, torch.zeros(1))[0] == "numba"
    assert dispatch.get(toy_op, "cpu", backend="reference")[0] == "reference"
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    assert dispatch.get(toy_op, "cpu")[0] == "reference"
    # forcing an unavailable backend is an error, never a silent fallback
    monkeypatch.setenv("DDFAD_BACKEND", "cpu")
    with pytest.raises(BackendUnavailableError, match="'cpu'"):
        dispatch.get(toy_op, "cpu")
    monkeypatch.setenv("DDFAD_BACKEND", "triton")
    with pytest.raises(BackendUnavailableError):
        dispatch.get(toy_op, "cpu")
    monkeypatch.setenv("DDFAD_BACKEND", "fortran")
    with pytest.raises(ParameterError, match="fortran"):
        dispatch.get(toy_op, "cpu")
    with pytest.raises(ParameterError, match="unknown op"):
        dispatch.get("no_such_op", "cpu", backend="reference")


def test_artifact_round_trip_and_checks(tmp_path):
    path = tmp_path / "a.pt"
    cfg = {"features": FeatureConfig().to_dict()}
    save_artifact(path, "example", {"features": torch.ones(2, 3), "names": ["x", "y"]}, config=cfg)
    obj = load_artifact(path, kind="example", expected_config=cfg)
    assert torch.equal(obj["features"], torch.ones(2, 3)) and obj["version"] == FORMAT_VERSION
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
    with pytest.raises(FileFormatError, match="holds 'example'"):
        load_artifact(path, kind="distilled")
    other = {"features": FeatureConfig(n_mfcc=13).to_dict()}
    with pytest.raises(FileFormatError, match="different config"):
        load_artifact(path, expected_config=other)
    with pytest.raises(FileFormatError, match="no such file"):
        load_artifact(tmp_path / "missing.pt")


def test_artifact_refuses_other_versions_and_foreign_files(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"format": "ddfad_fast", "kind": "features", "version": FORMAT_VERSION + 1, "config": {}}, old)
    with pytest.raises(FileFormatError, match="format version"):
        load_artifact(old)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(FileFormatError, match="not a ddfad_fast file"):
        load_artifact(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file at all")
    with pytest.raises(FileFormatError, match="garbage.pt"):
        load_artifact(garbage)


class _Payload:
    """Unpickling this runs os.mkdir(marker): a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_with_code_payload_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "ddfad_fast", "version": FORMAT_VERSION, "x": _Payload(marker)}, evil)
    with pytest.raises(FileFormatError, match="evil.pt"):
        load_artifact(evil)
    assert not marker.exists(), "the payload's code ran"


def test_atomic_json(tmp_path):
    atomic_write_json(tmp_path / "sub" / "r.json", {"a": 1})
    assert (tmp_path / "sub" / "r.json").read_text().strip().startswith("{")


def test_cli_without_command_is_usage_error(capsys):
    assert cli_main([]) == 2


def test_cli_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "ddfad_fast.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ddfad" in out.stdout


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        save_artifact(tmp_path / "a.pt", "features", {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    for name in ("r.json", "a.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_temporaries_of_a_killed_write_are_removed_when_the_file_is_written_again(tmp_path):
    # what a process killed between mkstemp and rename leaves behind
    stale = [tmp_path / ".r.json.tmp", tmp_path / ".clip[1].wav.tmp.wav"]
    other = [tmp_path / ".other.json.tmp", tmp_path / "keep.tmp"]
    for path in stale + other:
        path.write_bytes(b"partial")
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    save_audio(tmp_path / "clip[1].wav", np.zeros(80, np.float32), 8000)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in other)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in other] + ["r.json", "clip[1].wav"])


def test_cli_sub_command_that_fails_to_import_is_an_error(monkeypatch, capsys):
    import importlib
    from ddfad_fast.cli import entry as cli
    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "ddfad_fast.cli.bench":
            raise ImportError("No module named 'some_dependency'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(cli.importlib, "import_module", broken)
    assert cli_main(["features", "--help"]) == 1
    err = capsys.readouterr().err
    assert "'bench'" in err and "some_dependency" in err, err
    with pytest.raises(cli.CommandImportError, match="bench"):
        cli.build_parser()


def test_busy_cores_sees_a_spinning_process():
    """The busy-core estimate is instantaneous: a process spinning one core shows up at once (the 1-minute
    load average would lag it)."""
    import multiprocessing as mp
    from ddfad_fast.cli import entry as cli
    if not cli.os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    idle_before = cli._busy_cores(0.3)
    if idle_before > 0.5:          # another job's load comes and goes: the difference would be noise
        pytest.skip(f"the machine is busy ({idle_before:.1f} cores): needs a quiet one to see one spinning core")
    stop = mp.Event()
    spinner = mp.Process(target=_spin_until, args=(stop,), daemon=True)
    spinner.start()
    try:
        cli.time.sleep(0.2)
        busy = cli._busy_cores(0.5)
    finally:
        stop.set()
        spinner.join()
    assert busy >= 0.8, (idle_before, busy)


def _spin_until(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def test_threads_option(monkeypatch):
    """--threads sets torch's thread count; without it OMP_NUM_THREADS stands, else the free cores are used."""
    import torch
    from ddfad_fast.cli import entry as cli
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert cli.main(["backends", "--threads", "1"]) == 0 and torch.get_num_threads() == 1
        assert 0.0 <= cli._busy_cores(0.05) <= (cli.os.cpu_count() or 1) + 1e-6
        monkeypatch.setattr(cli, "_busy_cores", lambda: 64.0)
        assert cli.free_cores() == 1
        monkeypatch.setattr(cli, "_busy_cores", lambda: 0.2)
        assert cli.free_cores() == (cli.os.cpu_count() or 1)
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert cli.main(["backends"]) == 0 and torch.get_num_threads() == 1
        assert cli.main(["backends", "--threads", "0"]) == 2
    finally:
        torch.set_num_threads(before)
