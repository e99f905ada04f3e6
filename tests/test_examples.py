"""The worked examples run (at a tiny size) and do what they say."""
import importlib.util
import math
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mtt_cifar_example_distils_and_evaluates(capsys):
    out = _load("mtt_cifar").main(["--iterations", "3", "--syn-steps", "3", "--width", "8", "--ipc", "2",
                                   "--experts", "1", "--epochs", "3", "--real-per-class", "20", "--threads", "1"])
    assert len(out["losses"]) == 3 and all(math.isfinite(v) and v > 0 for v in out["losses"])
    assert set(out["accuracy"]) == {"distilled", "random real"} and out["syn_lr"] != 0.01   # the step size learns
    assert "matching loss" in capsys.readouterr().out
