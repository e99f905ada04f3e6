"""`ddfad run` and its parts: presets, report, out-folder safety, `ddfad evaluate`, and the slow end-to-end run."""
import json

import pytest
import torch

from ddfad_fast.cli import main
from ddfad_fast.config import FeatureConfig
from ddfad_fast.data import FeatureNorm
from ddfad_fast.io import load_artifact, save_artifact
from ddfad_fast.train.models import build_model
from ddfad_fast.presets import PRESET_NAMES, all_presets, get_preset
from ddfad_fast.apps.report import write_report
from ddfad_fast.errors import ParameterError


def test_presets_are_consistent():
    presets = all_presets()
    assert set(presets) == set(PRESET_NAMES) == {"cpu-small", "cpu-large", "paper"}
    for p in presets.values():
        assert p.distill.max_start_epoch + p.distill.expert_epochs <= p.expert.epochs
        for name in p.eval.models:
            shape = (3, p.features.n_mfcc, p.features.n_frames(8000))
            net = build_model(p.expert.model.replace(name=name), shape, 10)
            params = net.init_params(torch.Generator().manual_seed(0))
            assert params.shape == (net.num_params,) and net.forward(params, torch.zeros(2, *shape)).shape == (2, 10)
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
    """`ddfad evaluate` on a hand-made distilled file: its standardisation, model and soft labels travel inside."""
    config = FeatureConfig()
    feats = torch.randn(10, 3, 20, 101, generator=torch.Generator().manual_seed(0))
    norm = FeatureNorm(torch.full((3, 20, 1), -5.0), torch.full((3, 20, 1), 20.0))
    expert = {"model": {"name": "convnet", "width": 6, "depth": 2, "norm": "instancenorm", "activation": "relu",
                        "pooling": "avgpool"}}
    save_artifact(tmp_path / "set" / "distilled.pt", "distilled",
                  {"features": feats, "labels": torch.arange(10), "soft_labels": 5 * torch.eye(10),
                   "alpha": torch.tensor(0.02), "history": {}, **norm.to_payload()},
                  config={"features": config.to_dict(), "num_classes": 10, "standardized": True, "expert": expert})
    rc = main(["evaluate", str(tmp_path / "set" / "distilled.pt"), "--data", str(fsdd_dir), "--max-per-class", "2",
               "--num-nets", "1", "--epochs", "2", "--random-cpc", "1", "--full", "--cache", str(tmp_path / "c"),
               "--no-compile"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "distilled  convnet" in out and "lr 0.02" in out and "random 1/class" in out and "full  convnet" in out
    assert "% test" in out


@pytest.mark.slow
def test_distilled_beats_random_real(fsdd_dir, tmp_path):
    """A short MTT run on an FSDD subset: at 1 clip per class the distilled set beats random real clips."""
    out = tmp_path / "run"
    rc = main(["run", "--data", str(fsdd_dir), "--cpc", "1", "--out", str(out), "--max-per-class", "50",
               "--width", "16", "--num-experts", "3", "--expert-epochs", "8", "--expert-batch-size", "32",
               "--iterations", "60", "--syn-steps", "10", "--max-start-epoch", "4", "--num-nets", "4",
               "--eval-epochs", "150", "--full-epochs", "10", "--no-compile"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]["cpc1"]
    distilled, random = acc["distilled"]["convnet"]["mean"], acc["random"]["convnet"]["mean"]
    assert distilled > random, (distilled, random)
    assert report["num_train"] + report["num_val"] == 500 and report["num_val"] >= 40
    from ddfad_fast.provenance import git_commit
    assert report["machine"]["git_commit"] == git_commit()          # the code and machine the run came from
    assert report["machine"]["torch"] and len(report["machine"]["load_average_1_5_15"]) == 3
    assert report["classes"] == [str(d) for d in range(10)] and not report["failures"]
    assert "val_mean" in acc["distilled"]["convnet"] and "herding" in acc
    manifest = (out / "cpc1" / "audio" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,label" and len(manifest) == 11
    for name in ("report.md", "accuracy_vs_cpc.png", "distilled_grid.png", "run.json", "cpc1/distilled.pt"):
        assert (out / name).is_file()
    assert {"features", "experts", "distill cpc1", "evaluate cpc1", "audio cpc1"} <= set(report["stage_seconds"])
    assert main(["run", "--data", str(fsdd_dir), "--cpc", "1", "--out", str(out)]) == 2


@pytest.mark.usefixtures("single_thread")
def test_run_resume_to_more_iterations(tmp_path):
    """`ddfad run --resume --iterations N` continues a finished run: the distillation goes on from its
    checkpoint, and only its evaluation and audio are redone."""
    from helpers import tone_dataset
    tone_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = ["run", "--data", str(tmp_path / "data"), "--cpc", "1", "--out", str(out), "--width", "4",
            "--num-experts", "1", "--expert-epochs", "3", "--syn-steps", "2", "--no-compile", "--num-nets", "1",
            "--eval-epochs", "2", "--full-epochs", "1"]
    assert main(args + ["--iterations", "2"]) == 0
    first = json.loads((out / "report.json").read_text())
    full_before = first["accuracy"]["full"]["convnet"]
    assert first["iterations"] == {"cpc1": 2}
    assert main(args + ["--iterations", "4"]) == 2                        # a finished run needs --resume
    assert main(args + ["--iterations", "4", "--resume"]) == 0
    second = json.loads((out / "report.json").read_text())
    assert second["iterations"] == {"cpc1": 4}
    assert second["accuracy"]["cpc1"]["distilled"]["convnet"]["tag"] == "iterations=4"
    assert second["accuracy"]["full"]["convnet"] == full_before            # untouched
    history = torch.load(out / "cpc1" / "distilled.pt", weights_only=True)["history"]
    assert len(history["loss"]) == 4 and [s["start_iteration"] for s in history["sessions"]] == [0, 2]
    assert (out / "cpc1" / "audio" / "manifest.csv").is_file()


@pytest.mark.usefixtures("single_thread")
def test_run_cross_architecture_and_channel_ablation(tmp_path):
    """At the cross CPC the distilled set is also trained on other architectures, and the ablation rows
    distil and evaluate on the first 1 and 2 channels with their own experts."""
    from helpers import tone_dataset
    tone_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "data"), "--cpc", "1", "--out", str(out), "--width", "4",
                 "--num-experts", "1", "--expert-epochs", "3", "--iterations", "1", "--syn-steps", "2",
                 "--no-compile", "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1", "--no-audio",
                 "--cross-cpc", "1", "--cross-models", "vgg", "--ablation", "1,2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["accuracy"]["cpc1"]["distilled"]) == {"convnet", "vgg"}
    assert set(report["accuracy"]["cpc1"]["random"]) == {"convnet", "vgg"}
    assert set(report["accuracy"]["cpc1"]["herding"]) == {"convnet"}
    for k in (1, 2):
        rows = report["accuracy"]["ablation"][f"ch{k}"]
        assert set(rows) == {"distilled", "random", "full"} and "val_mean" in rows["distilled"]["convnet"]
        assert load_artifact(out / "ablation" / f"ch{k}" / "cpc1" / "distilled.pt", kind="distilled")["features"].shape[1] == k
    md = (out / "report.md").read_text()
    assert "Channel ablation (CPC 1" in md and "| MFCC (1 channel) |" in md and "| 1 | vgg |" in md


def _html_sources(page: str):
    import re
    return re.findall(r'<audio[^>]*src="([^"]+)"', page), re.findall(r'<img[^>]*src="([^"]*)"', page)


@pytest.mark.usefixtures("single_thread")
def test_report_html_plays_every_clip(tmp_path):
    """report.html: an <audio> player for every distilled clip and one real clip per class, each file present
    and decodable; every image an embedded PNG; the page opens from disk (relative links only)."""
    import base64
    import shutil
    import subprocess

    import soundfile
    from helpers import tone_dataset
    tone_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["run", "--data", str(tmp_path / "data"), "--cpc", "1", "--cpc", "2", "--out", str(out), "--width", "4",
                 "--num-experts", "1", "--expert-epochs", "3", "--iterations", "1", "--syn-steps", "2",
                 "--no-compile", "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1"]) == 0
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)                         # relative links: the folder can move
    page = (moved / "report.html").read_text()
    audio, images = _html_sources(page)
    assert len(audio) == 3 * 1 + 3 * 2 + 2 * 3            # distilled clips of CPC 1 and 2, a real one per class and CPC
    for src in audio:
        assert not src.startswith("/") and "://" not in src
        wave, sr = soundfile.read(moved / src)
        assert sr == 8000 and len(wave) == 8000             # the fixed length of the feature config
    assert len(images) >= len(audio) + 1
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed: the page was checked without a browser")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,900", (moved / "report.html").as_uri()], check=True, timeout=120,
                   capture_output=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
