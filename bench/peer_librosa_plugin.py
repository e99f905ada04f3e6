"""pytest plugin of bench/peer_librosa.py: runs librosa's own test suite with librosa's functions, or with
exactly the attributes that ``ddfad_fast.compat.librosa`` provides swapped in, and records per case which of
those attributes it called and its outcome.

Environment: ``DDFAD_PEER_MODE`` ``librosa`` (librosa's functions, wrapped only to record calls) or ``compat``;
``DDFAD_PEER_RECORD`` the JSON-lines file to append one record per case to; ``DDFAD_PEER_SELECT`` (optional) a
file of node ids: every other collected case is deselected.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Dict, List, Set

import pytest

# (librosa module, attribute) pairs swapped, named as in the results
SWAPPED = {
    "feature.mfcc": ("librosa.feature", "mfcc"),
    "feature.melspectrogram": ("librosa.feature", "melspectrogram"),
    "feature.delta": ("librosa.feature", "delta"),
    "feature.inverse.mfcc_to_mel": ("librosa.feature.inverse", "mfcc_to_mel"),
    "feature.inverse.mel_to_stft": ("librosa.feature.inverse", "mel_to_stft"),
    "feature.inverse.mel_to_audio": ("librosa.feature.inverse", "mel_to_audio"),
    "feature.inverse.mfcc_to_audio": ("librosa.feature.inverse", "mfcc_to_audio"),
    "power_to_db": ("librosa", "power_to_db"),
    "db_to_power": ("librosa", "db_to_power"),
    "amplitude_to_db": ("librosa", "amplitude_to_db"),
    "db_to_amplitude": ("librosa", "db_to_amplitude"),
    "griffinlim": ("librosa", "griffinlim"),
    "stft": ("librosa", "stft"),
    "filters.mel": ("librosa.filters", "mel"),
}

_current: Dict[str, Any] = {"nodeid": None, "calls": set()}
_calls: Dict[str, Set[str]] = {}


def _compat_function(name: str) -> Callable:
    import ddfad_fast.compat.librosa as compat
    target: Any = compat
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _recording(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _current["nodeid"] is not None:
            _calls.setdefault(_current["nodeid"], set()).add(name)
        return fn(*args, **kwargs)
    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    import importlib
    mode = os.environ.get("DDFAD_PEER_MODE", "librosa")
    if mode not in ("librosa", "compat"):
        raise pytest.UsageError(f"DDFAD_PEER_MODE must be librosa or compat, got {mode!r}")
    for name, (module_name, attribute) in SWAPPED.items():
        module = importlib.import_module(module_name)
        fn = getattr(module, attribute) if mode == "librosa" else _compat_function(name)
        setattr(module, attribute, _recording(name, fn))


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    select = os.environ.get("DDFAD_PEER_SELECT")
    if not select:
        return
    with open(select) as handle:
        wanted = {line.strip() for line in handle if line.strip()}
    keep = [item for item in items if item.nodeid in wanted]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in wanted])
    items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Any:
    _current["nodeid"] = item.nodeid
    yield
    _current["nodeid"] = None


def _reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    if isinstance(report.longrepr, tuple):                 # skips: (file, line, reason)
        return str(report.longrepr[2])[:300]
    return str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""


_outcomes: Dict[str, Dict[str, str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "reason": ""})
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        return
    if record["outcome"] in ("passed", "xfailed", "xpassed", "skipped") or outcome in ("failed", "error"):
        record.update(outcome=outcome, reason=_reason(report) if outcome != "xfailed" else "")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("DDFAD_PEER_RECORD")
    if not path:
        return
    with open(path, "w") as handle:
        for nodeid, record in _outcomes.items():
            handle.write(json.dumps({"nodeid": nodeid, **record, "calls": sorted(_calls.get(nodeid, ()))}) + "\n")
