"""Pause points: a test-only hook that holds a command at a known step of a stage.

``DDFAD_TEST_PAUSE_AT="<stage>:<step>:<folder>"`` makes the process, the ``step``-th time (1-based, counted
in this process) it passes the pause point of ``stage``, write ``<folder>/reached`` (``"<stage>:<step>
<pid>"``) and then wait until ``<folder>/go`` exists (at most :data:`TIMEOUT_S` seconds; then it warns and
goes on). A test waits for ``reached`` and sends its signal (SIGINT, SIGKILL) knowing that the process is
inside that stage, whatever the machine's speed; or it creates ``go`` to let it go on. The wait sleeps
in 10 ms steps, so Ctrl-C ends it at once.

Stages and their points (:data:`STAGES`): ``features`` after each decoded and transformed batch of the
feature store, ``experts`` after each expert epoch (its checkpoint written), ``distillation`` after each
iteration (its checkpoint written when due), ``evaluation`` after each epoch of the evaluation nets,
``audio`` after each reconstructed clip written, ``report`` before report.json / report.md (step 1) and
before report.html (step 2).

Unset (the normal case), :func:`point` returns at its first test: the variable is read once, at import.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import ParameterError

ENV = "DDFAD_TEST_PAUSE_AT"
STAGES = ("features", "experts", "distillation", "evaluation", "audio", "report")
TIMEOUT_S = 300.0
REACHED, GO = "reached", "go"

ARMED = bool(os.environ.get(ENV))            # read once: point() is called in training loops
_target: Optional[Tuple[str, int, Path]] = None
_counts: Dict[str, int] = {}


def parse(spec: str) -> Tuple[str, int, Path]:
    """``"<stage>:<step>:<folder>"`` -> (stage, step, folder); ParameterError naming the variable otherwise."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or parts[0] not in STAGES or not parts[1].isdigit() or int(parts[1]) < 1 or not parts[2]:
        raise ParameterError(f"{ENV}={spec!r}: expected '<stage>:<step>:<folder>' with a stage among "
                             f"{', '.join(STAGES)} and a step >= 1")
    return parts[0], int(parts[1]), Path(parts[2])


def configure(spec: Optional[str]) -> None:
    """Arm (``spec`` as in :data:`ENV`) or disarm (None) the pause points of this process; counts restart."""
    global ARMED, _target
    _target = parse(spec) if spec else None
    ARMED = _target is not None
    _counts.clear()


def point(stage: str) -> None:
    """Pass the pause point of ``stage`` (one of :data:`STAGES`): a no-op unless :data:`ENV` names this stage
    and this is its step; then write ``reached`` and wait for ``go`` (see the module's description)."""
    if not ARMED:
        return
    _pass(stage)


def _pass(stage: str) -> None:
    global _target
    if _target is None:
        _target = parse(os.environ[ENV])
    want, step, folder = _target
    if stage != want:
        return
    _counts[stage] = _counts.get(stage, 0) + 1
    if _counts[stage] != step:
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{REACHED}.{os.getpid()}"
    tmp.write_text(f"{stage}:{step} {os.getpid()}\n")
    os.replace(tmp, folder / REACHED)              # whole or absent: a test never reads half of it
    deadline = time.monotonic() + TIMEOUT_S
    while not (folder / GO).exists():
        if time.monotonic() > deadline:
            print(f"{ENV}: no {folder / GO} after {TIMEOUT_S:g} s at {stage} step {step}; going on",
                  file=sys.stderr, flush=True)
            return
        time.sleep(0.01)
