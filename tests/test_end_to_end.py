"""`ddfad run` and its parts: presets, report, out-folder safety, `ddfad evaluate`, and the slow end-to-end run."""
import json

import pytest
import torch

from ddfad_fast.cli import main
from ddfad_fast.config import FeatureConfig
from ddfad_fast.data import save_feature_stats
from ddfad_fast.io import save_artifact
from ddfad_fast.models import build_model
from ddfad_fast.presets import PRESET_NAMES, all_presets, get_preset
from ddfad_fast.report import write_report
from ddfad_fast.errors import ParameterError


def test_presets_are_consistent():
    presets = all_presets()
    assert set(presets) == set(PRESET_NAMES) == {"cpu-small", "cpu-large", "paper"}
    for p in presets.values():
        assert p.distill.max_start_epoch + p.distill.expert_epochs <= p.expert.epochs
        for name in p.eval.models:
            net = build_model(p.expert.model.replace(name=name), (3, p.features.n_mfcc, p.features.n_frames(8000)), 10)
            assert net.num_params > 0
    assert presets["paper"].expert.model.width == 128 and presets["paper"].expert.num_experts == 100
    with pytest.raises(ParameterError, match="unknown preset"):
        get_preset("huge")


def _fake_results():
    def ev(m):
        return {"accs": [m, m], "mean": m, "std": 0.01, "model": "convnet", "lr": 0.01}
    return {"preset": get_preset("cpu-small").to_dict(), "data": "somewhere", "cpcs": [1, 10],
            "classes": ["a", "b", "c"], "num_train": 30, "num_test": 9,
            "accuracy": {"cpc1": {"distilled": {"convnet": ev(0.5)}, "random": {"convnet": ev(0.4)}},
                         "cpc10": {"distilled": {"convnet": ev(0.8)}, "random": {"convnet": ev(0.7)}},
                         "full": {"convnet": ev(0.95)}},
            "alpha": {"cpc1": 0.02, "cpc10": 0.015}, "stage_seconds": {"experts": 1.5},
            "audio": {"cpc1": "cpc1/audio/manifest.csv"}, "skipped": [["x.wav", "unreadable"]]}


def test_report_files(tmp_path):
    feats = torch.randn(6, 3, 4, 7)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    written = write_report(tmp_path, _fake_results(), {1: (feats, labels)})
    names = {p.name for p in written}
    assert {"report.json", "report.md", "accuracy_vs_cpc.png", "distilled_grid.png"} <= names
    assert json.loads((tmp_path / "report.json").read_text())["accuracy"]["full"]["convnet"]["mean"] == 0.95
    md = (tmp_path / "report.md").read_text()
    assert "| 1 | convnet | 50.00 ± 1.00 | 40.00 ± 1.00 | 95.00 ± 1.00 | 0.02 |" in md
    assert "| 10 | convnet | 80.00 ± 1.00 | 70.00 ± 1.00 | 95.00 ± 1.00 | 0.015 |" in md
    assert (tmp_path / "accuracy_vs_cpc.png").read_bytes()[:4] == b"\x89PNG"


def test_run_never_overwrites_foreign_folders(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    args = ["run", "--data", str(tmp_path), "--cpc", "1", "--out", str(out)]
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 2
    assert "not a ddfad run folder" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep"


def test_evaluate_command(fsdd_dir, tmp_path, capsys):
    """`ddfad evaluate` on a hand-made distilled file with standardisation statistics beside it."""
    config = FeatureConfig()
    run = tmp_path / "run"
    save_feature_stats(run / "feature_stats.pt", torch.zeros(3), torch.ones(3), config)
    feats = torch.randn(10, 3, 20, 101, generator=torch.Generator().manual_seed(0))
    save_artifact(run / "cpc1" / "distilled.pt", "distilled",
                  {"features": feats, "labels": torch.arange(10), "alpha": torch.tensor(0.02), "history": {}},
                  config={"features": config.to_dict(), "num_classes": 10})
    rc = main(["evaluate", str(run / "cpc1" / "distilled.pt"), "--data", str(fsdd_dir), "--max-per-class", "2",
               "--num-nets", "1", "--epochs", "2", "--random-cpc", "1", "--full", "--cache", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "distilled  convnet" in out and "lr 0.02" in out and "random 1/class" in out and "full  convnet" in out


@pytest.mark.slow
def test_distilled_beats_random_real(fsdd_dir, tmp_path):
    """A short MTT run on an FSDD subset: at 1 clip per class the distilled set beats random real clips."""
    out = tmp_path / "run"
    rc = main(["run", "--data", str(fsdd_dir), "--cpc", "1", "--out", str(out), "--max-per-class", "50",
               "--width", "16", "--num-experts", "3", "--expert-epochs", "8", "--expert-batch-size", "32",
               "--iterations", "60", "--syn-steps", "10", "--max-start-epoch", "4", "--num-nets", "4",
               "--eval-epochs", "150", "--full-epochs", "10"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]["cpc1"]
    distilled, random = acc["distilled"]["convnet"]["mean"], acc["random"]["convnet"]["mean"]
    assert distilled > random, (distilled, random)
    assert report["num_train"] == 500 and report["classes"] == [str(d) for d in range(10)]
    manifest = (out / "cpc1" / "audio" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,label" and len(manifest) == 11
    for name in ("report.md", "accuracy_vs_cpc.png", "distilled_grid.png", "run.json", "feature_stats.pt",
                 "cpc1/distilled.pt", "cpc1/distilled_raw.pt"):
        assert (out / name).is_file()
    assert {"features", "experts", "distill cpc1", "evaluate cpc1", "audio cpc1"} <= set(report["stage_seconds"])
    assert main(["run", "--data", str(fsdd_dir), "--cpc", "1", "--out", str(out)]) == 2
