"""`ddfad features` and `ddfad reconstruct`: files in, files out, skips, exit codes, resume."""
import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from ddfad_fast import FeatureConfig, fd_mfcc, load_audio
from ddfad_fast.cli import main
from ddfad_fast.cli.features import parts_dir
from ddfad_fast.data import FeatureNorm
from ddfad_fast.ops.features import fit_length
from ddfad_fast.io import load_artifact, save_artifact


@pytest.fixture
def audio_dir(tmp_path, fsdd_files):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for k, path in enumerate(fsdd_files[:5]):
        shutil.copy(path, folder / ("sub" if k % 2 else "") / path.name)
    (folder / "broken.wav").write_text("not audio")
    (folder / "notes.txt").write_text("ignored: not an audio extension")
    return folder


def test_features_command(audio_dir, tmp_path, capsys):
    out = tmp_path / "f.pt"
    assert main(["features", str(audio_dir), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "read 5 of 6 files (1 skipped)" in text and "broken.wav" in text
    obj = load_artifact(out, kind="features")
    assert obj["features"].shape == (5, 3, 20, 101) and len(obj["paths"]) == 5
    assert FeatureConfig.from_dict(obj["config"]["features"]) == FeatureConfig()
    assert [s[0] for s in obj["skipped"]] == [str(audio_dir / "broken.wav")]
    first = obj["paths"][0]
    wave = fit_length(load_audio(first)[0], 8000)
    torch.testing.assert_close(obj["features"][0], fd_mfcc(wave, 8000)[0], rtol=1e-5, atol=5e-4)
    # never overwrite without asking; --strict turns the skip into a failure (exit 1)
    assert main(["features", str(audio_dir), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["features", str(audio_dir), "--out", str(tmp_path / "g.pt"), "--strict", "--quiet"]) == 1
    assert "broken.wav" in capsys.readouterr().err
    assert main(["features", str(tmp_path / "nowhere"), "--out", str(tmp_path / "h.pt")]) == 2


def test_features_resume_after_interruption(audio_dir, tmp_path, interrupt_call):
    whole = tmp_path / "whole.pt"
    assert main(["features", str(audio_dir), "--out", str(whole), "--quiet", "--checkpoint-every", "2"]) == 0
    out = tmp_path / "f.pt"
    import ddfad_fast.data.store as store_module
    restore = interrupt_call(store_module, "fd_mfcc", 3)                # Ctrl-C in the third chunk
    assert main(["features", str(audio_dir), "--out", str(out), "--quiet", "--checkpoint-every", "2"]) == 130
    assert len(list(parts_dir(out).glob("shard_*.json"))) == 2 and not out.exists()
    restore()
    assert main(["features", str(audio_dir), "--out", str(out), "--quiet", "--checkpoint-every", "2"]) == 2
    assert main(["features", str(audio_dir), "--out", str(out), "--quiet", "--checkpoint-every", "2", "--resume"]) == 0
    a, b = load_artifact(whole), load_artifact(out)
    assert torch.equal(a["features"], b["features"]) and a["paths"] == b["paths"] and a["skipped"] == b["skipped"]
    assert not parts_dir(out).exists()


def test_reconstruct_features_file(audio_dir, tmp_path, capsys):
    feats = tmp_path / "f.pt"
    assert main(["features", str(audio_dir), "--out", str(feats), "--quiet"]) == 0
    out = tmp_path / "wav"
    assert main(["reconstruct", str(feats), "--out", str(out), "--n-iter", "8", "--limit", "3"]) == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 3
    info = sf.info(wavs[0])
    assert info.samplerate == 8000 and info.frames == 8000
    report = json.loads((out / "reconstruction.json").read_text())
    assert len(report["clips"]) == 3 and report["mean_spectral_convergence_db"] < -5
    assert main(["reconstruct", str(feats), "--out", str(out), "--n-iter", "8", "--limit", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_reconstruct_distilled_set_undoes_standardisation(tmp_path):
    """A distilled file carries its standardisation: moved anywhere, it reconstructs like its raw features."""
    config = FeatureConfig()
    raw = fd_mfcc(torch.randn(4, 8000, generator=torch.Generator().manual_seed(0)) * 0.1, 8000)
    norm = FeatureNorm.fit(raw)
    save_artifact(tmp_path / "run" / "cpc2" / "distilled.pt", "distilled",
                  {"features": norm.apply(raw), "labels": torch.tensor([0, 0, 1, 1]), "alpha": torch.tensor(0.01),
                   **norm.to_payload()},
                  config={"features": config.to_dict(), "class_names": ["yes", "no"], "standardized": True})
    save_artifact(tmp_path / "features.pt", "features", {"features": raw, "paths": [f"c{i}.wav" for i in range(4)]},
                  config={"features": config.to_dict()})
    moved = tmp_path / "elsewhere" / "set.pt"
    moved.parent.mkdir()
    shutil.copyfile(tmp_path / "run" / "cpc2" / "distilled.pt", moved)
    shutil.rmtree(tmp_path / "run")                    # nothing left beside the original
    for name, source in (("a", moved), ("b", tmp_path / "features.pt")):
        assert main(["reconstruct", str(source), "--out", str(tmp_path / name), "--n-iter", "4"]) == 0
    rows = list(csv.reader(open(tmp_path / "a" / "manifest.csv")))
    assert rows == [["path", "label"], ["yes_000.wav", "yes"], ["yes_001.wav", "yes"], ["no_000.wav", "no"],
                    ["no_001.wav", "no"]]
    for wav, twin in (("yes_000.wav", "00000_c0.wav"), ("no_001.wav", "00003_c3.wav")):
        a, _ = sf.read(tmp_path / "a" / wav)
        b, _ = sf.read(tmp_path / "b" / twin)
        np.testing.assert_allclose(a, b, atol=2e-3)  # float32 round-off of (un)standardising


def test_reconstruct_refuses_other_files(tmp_path, capsys):
    save_artifact(tmp_path / "t.pt", "trajectory", {"params": torch.zeros(2, 3)}, config={})
    assert main(["reconstruct", str(tmp_path / "t.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "t.pt" in capsys.readouterr().err
