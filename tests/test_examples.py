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


def test_distill_dataset_example_runs_on_a_folder_and_as_a_hf_dataset(fsdd_dir, tmp_path, capsys, single_thread):
    import pytest
    from helpers import fsdd_subset
    data = tmp_path / "data"
    fsdd_subset(fsdd_dir, data)
    example = _load("distill_dataset")
    out = example.main(["--data", str(data), "--cpc", "2", "--out", str(tmp_path / "run"), "--tiny"])
    assert out["run"].features.shape == (6, 3, 20, 101) and out["waves"].shape == (6, 8000)
    printed = capsys.readouterr().out
    assert "features: 8000 Hz, 1 s clips" in printed and "test accuracy" in printed
    pytest.importorskip("datasets")
    hf = example.main(["--data", str(data), "--cpc", "2", "--out", str(tmp_path / "hf"), "--tiny", "--hf",
                       "--export", str(tmp_path / "export")])
    assert (hf["run"].features == out["run"].features).all()          # the same clips, the same distilled set
    assert hf["exported"].num_rows == 6 and (tmp_path / "export" / "dataset_info.json").is_file()
