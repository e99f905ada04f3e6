"""The Python API of the whole job (distill_dataset, DistillRun) on folders and iterables; `ddfad run` goes
through it."""
import json

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

import ddfad_fast as dd  # noqa: E402
from ddfad_fast.apps.result import DistillRun  # noqa: E402
from helpers import tiny_preset  # noqa: E402

@pytest.mark.usefixtures("single_thread")
def test_cli_run_stores_the_feature_choice(cli_run):
    _, run = cli_run
    choice = json.loads((run / "run.json").read_text())["features_choice"]
    assert choice["sample_rate"] == 8000 and choice["duration_s"] == 1.0 and choice["inferred"] == ["rate", "duration"]
    assert json.loads((run / "report.json").read_text())["features_choice"]["line"].startswith("features: 8000 Hz, 1 s")


@pytest.mark.usefixtures("single_thread")
def test_iterable_source_gives_the_folder_runs_tensors(cli_run, tmp_path, capsys):
    """(waveform, sample_rate, label, split) tuples of the same clips, in the same order: the same distilled set."""
    data, run = cli_run
    files = sorted(data.glob("*.wav"))
    # validation strata use speakers, which tuples do not carry: compare with a manifest without them
    rows = []
    for f in files:
        digit, _, index = f.stem.split("_")
        wave, sr = sf.read(f, dtype="float32")
        rows.append((wave, sr, digit, "test" if int(index) <= 4 else "train"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\n" + "".join(f"{f},{r[2]},{r[3]}\n" for f, r in zip(files, rows)))
    preset = tiny_preset(run)
    by_csv = dd.distill_dataset(str(manifest), cpc=2, preset=preset, out=tmp_path / "csv", audio=False, seed=0)
    by_tuples = dd.distill_dataset(iter(rows), cpc=2, preset=preset, out=tmp_path / "tuples", audio=False, seed=0)
    assert torch.equal(by_csv.features, by_tuples.features) and torch.equal(by_csv.labels, by_tuples.labels)
    assert by_tuples.features.shape == (6, 3, 20, 101) and by_tuples.class_names == ["0", "1", "2"]
    assert capsys.readouterr().out.count("features: 8000 Hz, 1 s clips") == 2
    # the same examples again: the same source folder (and feature store) is found
    again = dd.distill_dataset(rows, cpc=2, preset=preset, out=tmp_path / "tuples", audio=False, seed=0, resume=True)
    assert torch.equal(again.features, by_tuples.features)
    assert len(list((tmp_path / "tuples" / "cache").glob("source_*"))) == 1


@pytest.mark.usefixtures("single_thread")
def test_result_audio_evaluate_save_load(cli_run, tmp_path):
    data, run = cli_run
    result = DistillRun.from_folder(run)
    assert result.cpcs == [2] and result.features.shape == (6, 3, 20, 101) and result.labels.tolist() == [0, 0, 1, 1, 2, 2]
    waves, sr = result.to_audio()
    assert sr == 8000 and waves.shape == (6, 8000) and float(waves.abs().max()) <= 0.99 + 1e-6
    written, _ = sf.read(run / "cpc2" / "audio" / "0_000.wav", dtype="float32")
    assert np.abs(written - waves[0].numpy()).max() < 1e-4          # the WAV the run wrote (16-bit PCM)
    acc = result.evaluate(num_nets=1, steps=3)
    assert set(acc) == {"convnet"} and 0.0 <= acc["convnet"]["mean"] <= 1.0
    path = result.save(tmp_path / "distilled_run.pt")
    loaded = DistillRun.load(path)
    assert torch.equal(loaded.features, result.features) and loaded.report == result.report
    assert loaded.alpha == result.alpha and loaded.folder is None
    torch.load(path, weights_only=True)                 # weights only
    with pytest.raises(dd.ParameterError, match="pass data="):
        loaded.evaluate()
    other = loaded.evaluate(data=str(data), num_nets=1, steps=3)
    assert 0.0 <= other["convnet"]["mean"] <= 1.0


def test_bad_data_is_one_clear_error(tmp_path):
    with pytest.raises(dd.ParameterError, match="must be a folder, a CSV manifest"):
        dd.distill_dataset(42, out=tmp_path / "x")
    with pytest.raises(dd.ParameterError, match=r"item 0 must be \(waveform, sample_rate, label"):
        dd.distill_dataset([np.zeros(10)], out=tmp_path / "y")
    with pytest.raises(dd.ParameterError, match="needs a sample rate > 0"):
        dd.distill_dataset([(np.zeros(10), 0, "a")], out=tmp_path / "z")
    with pytest.raises(dd.ParameterError, match="neither a folder nor a .csv"):
        dd.distill_dataset(str(tmp_path / "missing"), out=tmp_path / "w")


def test_the_out_folder_is_checked_before_the_data_is_read(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    rows = iter([(np.zeros(10), 8000, "a")])
    with pytest.raises(dd.ParameterError, match="exists; pass --resume"):
        dd.distill_dataset(rows, out=out)
    with pytest.raises(dd.ParameterError, match="not a ddfad run folder"):
        dd.distill_dataset(rows, out=out, overwrite=True)
    assert (out / "precious.txt").read_text() == "keep" and not (out / "cache").exists()
    assert next(rows)[2] == "a"                         # nothing was read
