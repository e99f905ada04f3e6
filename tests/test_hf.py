"""Hugging Face datasets in and out, offline: small datasets built from FSDD clips (nothing downloads)."""
import io
import json

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
sf = pytest.importorskip("soundfile")

import ddfad_fast as dd  # noqa: E402
from ddfad_fast.data.hf import hf_examples, open_hf  # noqa: E402
from ddfad_fast.data.resolve import resolve_source  # noqa: E402
from helpers import tiny_preset  # noqa: E402


def fsdd_dataset(files, names=("0", "1", "2")) -> "datasets.DatasetDict":
    """The files as a DatasetDict (official FSDD split, speaker column), built as users do: from_dict + cast."""
    def part(group):
        table = {"audio": [str(f) for f in group], "label": [names.index(f.name[0]) for f in group],
                 "speaker": [f.stem.split("_")[1] for f in group]}
        return (datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio())
                .cast_column("label", datasets.ClassLabel(names=list(names))))
    test = [f for f in files if int(f.stem.split("_")[2]) <= 4]
    return datasets.DatasetDict({"train": part([f for f in files if f not in test]), "test": part(test)})


@pytest.mark.usefixtures("single_thread")
def test_in_memory_dataset_gives_the_cli_folder_runs_tensors(cli_run, tmp_path):
    """distill_dataset on an in-memory DatasetDict of the clips == `ddfad run` on their folder (same seed, preset)."""
    data, run = cli_run
    ds = fsdd_dataset(sorted(data.glob("*.wav")))
    result = dd.distill_dataset(ds, cpc=2, preset=tiny_preset(run), out=tmp_path / "hf", audio=False, seed=0)
    cli = torch.load(run / "cpc2" / "distilled.pt", weights_only=True)
    assert torch.equal(result.features, cli["features"]) and torch.equal(result.labels, cli["labels"])
    assert result.alpha == pytest.approx(float(cli["alpha"]), abs=0)
    saved = json.loads((tmp_path / "hf" / "run.json").read_text())
    assert saved["features_choice"]["sample_rate"] == 8000 and "source_" in saved["data"]


def test_saved_streamed_and_in_memory_datasets_spool_identically(fsdd_files, tmp_path):
    files = [f for f in fsdd_files if f.name[0] in "012"]
    ds = fsdd_dataset(files)
    first = resolve_source(ds, tmp_path / "c", progress=False)
    ds.save_to_disk(str(tmp_path / "saved"))
    assert resolve_source(str(tmp_path / "saved"), tmp_path / "c", progress=False) == first
    streamed = datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in ds.items()})
    examples, total = hf_examples(streamed)
    assert total is None                           # a stream: its length is not known before reading
    assert resolve_source(streamed, tmp_path / "c", progress=False) == first
    rows = open(first).read().splitlines()
    assert rows[0] == "path,label,split,speaker" and len(rows) == len(files) + 1
    assert {r.split(",")[2] for r in rows[1:]} == {"train", "test"}


def test_stream_is_not_held_in_memory(tmp_path):
    """A generator-backed IterableDataset: examples are written one by one (the generator runs ahead of the
    spool by at most a few rows)."""
    seen = {"made": 0, "max_ahead": 0}
    written = []

    def gen():
        for k in range(40):
            seen["made"] += 1
            seen["max_ahead"] = max(seen["max_ahead"], seen["made"] - len(written))
            buffer = io.BytesIO()
            sf.write(buffer, np.full(800, 0.01 * (k % 5), dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
            yield {"audio": {"bytes": buffer.getvalue(), "path": None}, "label": k % 2}

    # the audio column as the struct an Audio column stores (datasets 5 encodes a generator's Audio values
    # through torchcodec, which this package does not need)
    audio = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features({"audio": audio, "label": datasets.ClassLabel(names=["a", "b"])})
    stream = datasets.IterableDataset.from_generator(gen, features=features)
    from ddfad_fast.data import spool
    real = spool._encoded

    def counting(example, where):
        written.append(1)
        return real(example, where)

    spool._encoded = counting
    try:
        manifest = resolve_source(stream, tmp_path / "c", progress=False)
    finally:
        spool._encoded = real
    assert len(open(manifest).read().splitlines()) == 41 and seen["max_ahead"] <= 2


def test_label_and_split_handling(fsdd_files, tmp_path):
    files = fsdd_files[:6]
    table = {"clip": [str(f) for f in files], "digit": [int(f.name[0]) for f in files],
             "split": ["train", "validation", "test", "train", "train", "test"]}
    ds = datasets.Dataset.from_dict(table).cast_column("clip", datasets.Audio())
    with pytest.raises(dd.ParameterError, match="which column holds the label"):
        list(hf_examples(ds)[0])
    examples = list(hf_examples(ds, label_column="digit")[0])
    assert [e.split for e in examples] == ["train", "train", "test", "train", "train", "test"]
    assert [e.label for e in examples] == [str(d) for d in table["digit"]]
    odd = datasets.DatasetDict({"train": ds, "other": ds})
    with pytest.raises(dd.ParameterError, match=r"split\(s\) \['other'\]"):
        hf_examples(odd, label_column="digit")
    unlabelled = datasets.Dataset.from_dict({"audio": [str(f) for f in files[:2]], "label": [0, -1]}).cast_column(
        "audio", datasets.Audio()).cast_column("label", datasets.ClassLabel(names=["x"]))
    assert [e.label for e in hf_examples(unlabelled)[0]] == ["x"]
    with pytest.raises(dd.ParameterError, match="not found in the local Hugging Face cache"):
        open_hf("hf:ddfad-no-such-dataset-here")


@pytest.mark.usefixtures("single_thread")
def test_export_to_hf_dataset_and_back(cli_run, tmp_path):  # noqa: F811
    from ddfad_fast.apps.result import DistillRun
    _, run = cli_run
    result = DistillRun.from_folder(run)
    exported = result.to_hf()
    assert exported.num_rows == 6 and exported.features["label"].names == ["0", "1", "2"]
    exported.save_to_disk(str(tmp_path / "distilled"))
    back = datasets.load_from_disk(str(tmp_path / "distilled"))
    assert back["label"] == result.labels.tolist()
    row = back[0]["audio"]
    wave, sr = sf.read(io.BytesIO(row["bytes"]), dtype="float32")
    assert sr == 8000 and wave.shape == (8000,)
    waves, _ = result.to_audio()
    assert np.abs(wave - waves[0].numpy()).max() < 1e-4
    # soft labels travel as logits; the exported set reads back in as a source
    result.set().soft_labels = torch.randn(6, 3)
    soft = result.to_hf()
    assert np.allclose(np.array(soft["soft_label_logits"]), result.soft_labels.numpy(), atol=1e-6)
    examples = list(hf_examples(back)[0])
    assert [e.label for e in examples] == ["0", "0", "1", "1", "2", "2"]


def test_hf_name_is_read_from_the_local_cache_only(monkeypatch, fsdd_files):
    import huggingface_hub.constants as hub
    ds = fsdd_dataset([f for f in fsdd_files if f.name[0] in "012"])
    before = (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE)
    seen = {}

    def cached_only(name, config=None, **kwargs):
        seen.update(name=name, config=config, offline=(datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE))
        return ds

    monkeypatch.setattr(datasets, "load_dataset", cached_only)
    assert open_hf("hf:someone/digits:clean") is ds
    assert seen == {"name": "someone/digits", "config": "clean", "offline": (True, True)}
    assert (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE) == before
