"""Dispatch is observable: required extension, fallback warnings, debug log, ``ddfad backends``, exercised dispatch."""
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ddfad_fast.ops import dispatch, cpu
from ddfad_fast import fd_mfcc
from ddfad_fast.cli import main as cli_main
from ddfad_fast.errors import BackendFallbackWarning, BackendUnavailableError, ParameterError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_extension():
    """ddfad_fast._C made unloadable (as a failed build would leave it) for the duration of a test."""
    saved = sys.modules.get("ddfad_fast._C")
    sys.modules["ddfad_fast._C"] = None          # import_module now raises ModuleNotFoundError
    cpu.extension_loaded.cache_clear()
    yield
    if saved is None:
        sys.modules.pop("ddfad_fast._C", None)
    else:
        sys.modules["ddfad_fast._C"] = saved
    cpu.extension_loaded.cache_clear()


@pytest.fixture
def fresh_warnings(monkeypatch):
    """An empty record of the fallbacks already warned about, and no DDFAD_* variables from the caller."""
    monkeypatch.setattr(dispatch, "_WARNED", set())
    for name in ("DDFAD_BACKEND", "DDFAD_REQUIRE_EXT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def toy_op():
    """An op whose preferred CPU backend ``cpu`` is unavailable, with a reason."""
    name = "_toy_fallback_op"
    dispatch.register(name, "reference", lambda x: "ref", devices=("cpu", "cuda"))
    dispatch.register(name, "cpu", lambda x: "cpu", devices=("cpu",), available=lambda: False,
                      why_unavailable=lambda: "toy library missing")
    dispatch.set_preference(name, "cpu", ("cpu",))
    yield name
    dispatch._REGISTRY.pop(name)
    dispatch._PREFERENCE.pop((name, "cpu"), None)


def _fallback_warnings(record):
    return [w for w in record if issubclass(w.category, BackendFallbackWarning)]


# ---- DDFAD_REQUIRE_EXT ------------------------------------------------------------------------------
def test_required_extension_that_does_not_load_is_an_error_naming_the_cause(no_extension, fresh_warnings, monkeypatch):
    waves = torch.zeros(1, 800)
    with pytest.warns(BackendFallbackWarning, match="ddfad_fast._C did not load"):   # without the switch: warned
        assert dispatch.get("fd_mfcc", waves)[0] == "reference"
    monkeypatch.setenv("DDFAD_REQUIRE_EXT", "1")
    for call in (lambda: dispatch.get("fd_mfcc", waves), lambda: fd_mfcc(waves, 8000),
                 lambda: dispatch.get("griffin_lim", waves, backend="reference")):
        with pytest.raises(BackendUnavailableError, match=r"DDFAD_REQUIRE_EXT=1.*ddfad_fast\._C.*ModuleNotFoundError"):
            call()
    monkeypatch.setenv("DDFAD_REQUIRE_EXT", "yes")
    with pytest.raises(ParameterError, match="DDFAD_REQUIRE_EXT"):
        dispatch.get("fd_mfcc", waves)


@pytest.mark.skipif(not cpu.extension_loaded(), reason="C++ extension ddfad_fast._C not built")
def test_required_extension_that_loads_changes_nothing(fresh_warnings, monkeypatch):
    monkeypatch.setenv("DDFAD_REQUIRE_EXT", "1")
    assert dispatch.get("fd_mfcc", torch.zeros(1, 800))[0] == "cpu"


def test_required_extension_stops_the_test_session(tmp_path):
    """conftest refuses to start a session under DDFAD_REQUIRE_EXT=1 when ddfad_fast._C does not load."""
    code = ("import sys; sys.modules['ddfad_fast._C'] = None\n"
            "import pytest\n"
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {str(ROOT / 'tests' / 'test_backends.py')!r}, "
            "'-k', 'loads_changes_nothing']))\n")
    env = dict(os.environ, DDFAD_REQUIRE_EXT="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 5), out
    assert "DDFAD_REQUIRE_EXT=1" in out and "ModuleNotFoundError" in out, out


# ---- fallback warnings ------------------------------------------------------------------------------
def test_fallback_warns_once_naming_backend_and_reason(toy_op, fresh_warnings):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            assert dispatch.get(toy_op, torch.zeros(1))[0] == "reference"
    found = _fallback_warnings(record)
    assert len(found) == 1, [str(w.message) for w in found]
    message = str(found[0].message)
    assert "'cpu'" in message and toy_op in message and "toy library missing" in message and "'reference'" in message


def test_probe_that_raises_is_a_warned_fallback_not_a_silent_one(toy_op, fresh_warnings):
    def probe():
        raise RuntimeError("driver exploded")
    dispatch.register(toy_op, "cpu", lambda x: "cpu", devices=("cpu",), available=probe)
    with pytest.warns(BackendFallbackWarning, match=r"'cpu'.*RuntimeError: driver exploded"):
        assert dispatch.get(toy_op, "cpu")[0] == "reference"
    with pytest.raises(BackendUnavailableError, match="driver exploded"):
        dispatch.get(toy_op, "cpu", backend="cpu")


def test_provider_import_error_is_warned_and_explained(toy_op, fresh_warnings, monkeypatch):
    dispatch._REGISTRY[toy_op].pop("cpu")
    dispatch.set_preference(toy_op, "cpu", ("numba",))
    monkeypatch.setattr(dispatch, "_PROVIDER_MODULES", {**dispatch._PROVIDER_MODULES,
                                                        "ddfad_fast._missing_provider": ("numba",)})
    monkeypatch.setattr(dispatch, "_import_errors", {})
    monkeypatch.setattr(dispatch, "_loaded", False)
    with pytest.warns(BackendFallbackWarning, match=r"'numba'.*ddfad_fast\._missing_provider failed to import"):
        assert dispatch.get(toy_op, "cpu")[0] == "reference"
    chosen, why = dispatch.explain(toy_op, "cpu")
    assert chosen == "reference"
    assert "ddfad_fast._missing_provider failed to import" in dict(why)["numba"]


def test_dtype_and_missing_op_gaps_are_warned_too(toy_op, fresh_warnings):
    """A backend of the automatic order passed over because it does not take the dtype, or does not implement the
    op, is a fallback like any other: warned once, naming the reason (float64 on the GPU kernels, say)."""
    dispatch.register(toy_op, "cpu", lambda x: "cpu", devices=("cpu",), dtypes=(torch.float32,))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert dispatch.get(toy_op, torch.zeros(1, dtype=torch.float64))[0] == "reference"
        assert dispatch.get(toy_op, torch.zeros(1))[0] == "cpu"
    found = [str(w.message) for w in _fallback_warnings(record)]
    assert len(found) == 1 and "'cpu'" in found[0] and "does not take torch.float64" in found[0], found
    assert "does not take torch.float64" in dict(dispatch.explain(toy_op, "cpu", torch.float64)[1])["cpu"]
    dispatch._REGISTRY[toy_op].pop("cpu")               # not implemented at all: said as well
    with pytest.warns(BackendFallbackWarning, match=r"'cpu'.*not registered for op"):
        assert dispatch.get(toy_op, torch.zeros(1))[0] == "reference"


def test_every_op_has_a_fast_backend_for_float32_on_every_device():
    """No op runs plain torch by design on a device the package has kernels for."""
    for op in ("fd_mfcc", "mfcc", "griffin_lim"):
        assert {"cpu", "triton", "cuda"} <= set(dispatch.registered(op)), (op, dispatch.registered(op))


def test_missing_extension_is_warned_by_the_public_op(no_extension, fresh_warnings):
    with pytest.warns(BackendFallbackWarning, match=r"'cpu'.*'fd_mfcc'.*ddfad_fast\._C did not load"):
        fd_mfcc(torch.zeros(1, 800), 8000)


# ---- debug log, explain, ddfad backends, exercised ----------------------------------------------------
def test_each_dispatch_decision_is_logged_at_debug_level(toy_op, fresh_warnings, caplog):
    with caplog.at_level(logging.DEBUG, logger="ddfad_fast.ops.dispatch"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dispatch.get(toy_op, "cpu")
        dispatch.get(toy_op, "cpu", backend="reference")
    lines = [r.getMessage() for r in caplog.records if r.name == "ddfad_fast.ops.dispatch"]
    assert len(lines) == 2 and all(line.startswith(f"{toy_op} -> reference") for line in lines), lines
    assert lines[1].endswith("forced)")


def test_cli_backends_names_the_reason_an_available_backend_is_not(no_extension, fresh_warnings, capsys):
    assert cli_main(["backends", "--op", "fd_mfcc", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "C++ extension ddfad_fast._C: not loaded: ModuleNotFoundError" in out
    assert "fd_mfcc on cpu, float32: reference" in out
    cpu_line = next(line for line in out.splitlines() if line.strip().startswith("cpu "))
    assert "unavailable" in cpu_line and "ddfad_fast._C did not load" in cpu_line, out
    assert "runs on cuda tensors, not cpu" in out


def test_cli_backends_lists_every_op_and_reports_a_forced_backend(fresh_warnings, monkeypatch, capsys):
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    assert cli_main(["backends"]) == 0
    out = capsys.readouterr().out
    for op in ("fd_mfcc", "mfcc", "griffin_lim"):
        for dtype in ("float32", "float64"):
            assert f"{op} on cpu, {dtype}: reference" in out
    assert "runs (forced by DDFAD_BACKEND)" in out
    assert cli_main(["backends", "--op", "no_such_op"]) == 2


def test_exercised_labels_the_backend_and_device_that_ran(fresh_warnings, monkeypatch):
    monkeypatch.setattr(dispatch, "_EXERCISED", set())
    fd_mfcc(torch.zeros(1, 800), 8000, backend="reference")
    assert dispatch.exercised() == {"fd_mfcc": ["reference"]}
    dispatch._EXERCISED.update({("fd_mfcc", "triton", "cpu"), ("griffin_lim", "reference", "cuda")})
    assert dispatch.exercised() == {"fd_mfcc": ["reference", "triton(interpreter)"],
                                    "griffin_lim": ["reference(cuda)"]}
