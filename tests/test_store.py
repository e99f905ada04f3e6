"""The sharded feature store: building (workers, shards, resume, broken files, torchrun), reading on demand,
and training read from a store equal to training read from memory."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ddfad_fast.data.store as store_module
from ddfad_fast.config import ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.data import FeatureNorm, extract_features, features_on, first_channels, labelled_items, load_feature_split
from ddfad_fast.errors import AudioFileError, FileFormatError, ParameterError, ResourceError
from ddfad_fast.train.evaluate import data_fingerprint
from ddfad_fast.data.store import FeatureStore, StoredFeatures, build_store
from ddfad_fast.resources import plan_features

SR = 8000


def write_clip(path: Path, freq: float, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR)


def class_folder(root: Path, per_class: int = 6, classes: int = 3, broken: int = 0) -> Path:
    """Class sub-folders of short tones (lengths vary, some longer than a second); ``broken`` unreadable files."""
    for c in range(classes):
        for i in range(per_class):
            write_clip(root / f"c{c}" / f"{i:02d}.wav", 200 + 250 * c + 7 * i, 0.2 + 0.13 * i, seed=10 * c + i)
    bad = [b"not audio", b"", b"RIFF\x24\x00\x00\x00WAVEfmt "]
    for j in range(broken):
        (root / f"c{j % classes}" / f"zz_broken{j}.wav").write_bytes(bad[j % len(bad)])
    return root


def test_store_equals_the_in_memory_path_for_any_shard_size_and_worker_count(tmp_path):
    folder = class_folder(tmp_path / "d", broken=2)
    items, _ = labelled_items(folder, FeatureConfig())
    x_ref, kept, skipped = extract_features([it.path for it in items], FeatureConfig(), progress=False)
    stores = []
    for k, (shard, batch, workers) in enumerate([(4096, 256, 0), (5, 3, 1), (7, 2, 2)]):
        store = build_store(items, FeatureConfig(), tmp_path / f"s{k}", shard_size=shard, batch_size=batch,
                            workers=workers)
        stores.append(store)
        assert len(store) == len(kept) == len(items) - 2
        assert torch.equal(store.features().materialize(), x_ref)
        assert store.column("path") == [str(items[i].path) for i in kept]
        assert sorted(p for p, _ in store.skipped) == sorted(p for p, _ in skipped)
        assert all("zz_broken" in p and reason for p, reason in store.skipped)
    assert stores[1].features()[torch.tensor([3, 0, 11])].shape == (3, 3, 20, 101)


def test_stored_features_read_by_rows(tmp_path, rng):
    store = build_store(labelled_items(class_folder(tmp_path / "d"), FeatureConfig())[0], FeatureConfig(),
                        tmp_path / "s", shard_size=4, batch_size=3, workers=0)
    x = store.features()
    full = x.materialize()
    norm = FeatureNorm.fit(full)
    lazy_norm = FeatureNorm.fit(x)
    torch.testing.assert_close(lazy_norm.mean, norm.mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lazy_norm.std, norm.std, rtol=1e-6, atol=1e-6)
    idx = torch.from_numpy(rng.integers(0, len(x), size=(2, 5)))
    mask = torch.from_numpy(rng.random(len(x)) < 0.5)
    assert torch.equal(x[idx], full[idx]) and torch.equal(x[mask], full[mask]) and torch.equal(x[2:9], full[2:9])
    assert torch.equal(x[-1], full[-1]) and torch.equal(x[3], full[3])
    sub = x.subset(torch.tensor([5, 1, 7]))
    assert isinstance(sub, StoredFeatures) and torch.equal(sub.materialize(), full[[5, 1, 7]])
    std = norm.apply(x)                           # stored features standardise what they read
    assert isinstance(std, StoredFeatures) and torch.equal(std[idx], norm.apply(full)[idx])
    two = std.first_channels(2)
    assert two.shape == (len(x), 2, 20, 101) and torch.equal(two.rows(idx), norm.apply(full)[:, :2][idx])
    assert torch.equal(first_channels(full, 2), full[:, :2]) and first_channels(full, 2).is_contiguous()
    assert data_fingerprint(std, torch.arange(3)) == data_fingerprint(norm.apply(full), torch.arange(3))
    assert torch.equal(x.rows(idx), x[idx]) and x.dtype == torch.float32 and len(x.shape) == 4
    moved = x.to_device("meta")                   # a view: reads land on its device, nothing is read now
    assert isinstance(moved, StoredFeatures) and moved.device == torch.device("meta") and x.device.type == "cpu"
    assert moved.rows(torch.tensor([0, 1])).device.type == "meta"
    assert features_on(x, "cpu").device.type == "cpu" and isinstance(features_on(x, "cpu"), StoredFeatures)
    assert features_on(full.double(), "cpu").dtype == torch.float32
    for gone in ("to", "cpu", "float", "detach", "contiguous", "dim", "size", "numel"):
        assert not hasattr(x, gone), gone           # not a tensor: no tensor methods that would do nothing
    with pytest.raises(ParameterError, match="first_channels"):
        x[:, :2]


def build_interrupted(items, folder: Path, interrupt_call) -> None:
    """Build a store of ``items`` in shards of 4 that is interrupted (Ctrl-C) while computing its third shard."""
    restore = interrupt_call(store_module, "fd_mfcc", 3)
    with pytest.raises(KeyboardInterrupt):
        build_store(items, FeatureConfig(), folder, shard_size=4, batch_size=4, workers=0)
    restore()
    assert len(list(folder.glob("shard_*.json"))) == 2 and not (folder / "index.json").exists()


def test_interrupted_build_resumes_shard_by_shard(tmp_path, monkeypatch, interrupt_call):
    items, _ = labelled_items(class_folder(tmp_path / "d"), FeatureConfig())
    whole = build_store(items, FeatureConfig(), tmp_path / "whole", shard_size=4, batch_size=4, workers=0)
    build_interrupted(items, tmp_path / "s", interrupt_call)
    real, calls = store_module.fd_mfcc, []
    monkeypatch.setattr(store_module, "fd_mfcc", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    again = build_store(items, FeatureConfig(), tmp_path / "s", shard_size=4, batch_size=4, workers=0)
    assert len(calls) == -(-len(items) // 4) - 2           # only the shards that were missing
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name
    assert torch.equal(again.features().materialize(), whole.features().materialize())


def test_store_refuses_what_it_was_not_made_for(tmp_path):
    items, _ = labelled_items(class_folder(tmp_path / "d"), FeatureConfig())
    store = build_store(items, FeatureConfig(), tmp_path / "s", workers=0)
    with pytest.raises(FileFormatError, match="other files or feature settings"):
        FeatureStore(tmp_path / "s", expected_key="0" * 64)
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    index["version"] = 99
    (tmp_path / "s" / "index.json").write_text(json.dumps(index))
    with pytest.raises(FileFormatError, match="version"):
        FeatureStore(tmp_path / "s")
    assert len(store) == len(items)
    with pytest.raises(AudioFileError, match="zz_broken0.wav"):
        build_store(labelled_items(class_folder(tmp_path / "e", broken=1), FeatureConfig())[0], FeatureConfig(),
                    tmp_path / "t", strict=True, workers=1)


def test_memory_plan_fits_or_refuses_with_numbers():
    config = FeatureConfig.speech16k()
    assert plan_features(config, None, workers=2) == (4096, 256, 2)
    shard, batch, workers = plan_features(config, 64.0, workers=2)
    assert (shard, batch, workers) == (4096, 256, 2)
    shard, batch, workers = plan_features(config, 0.001 + _rss_gb() + 0.06, workers=2)
    assert shard < 4096 or batch < 256 or workers < 2
    with pytest.raises(ResourceError, match=r"GB already in use.*--max-memory 0.1 GB"):
        plan_features(config, 0.1, workers=2)


def _rss_gb() -> float:
    from ddfad_fast.resources import process_rss_bytes
    return process_rss_bytes() / 2 ** 30


def test_training_from_a_store_equals_training_from_memory(tmp_path):
    """Experts, evaluation and the baselines read batch by batch from a store give the very numbers they
    give on tensors in memory (eager steps: bit for bit)."""
    from ddfad_fast.train.evaluate import evaluate_training_set, random_real_subset
    from ddfad_fast.config import EvalConfig
    from ddfad_fast.train.experts import train_experts, load_trajectories
    folder = class_folder(tmp_path / "d", per_class=8)
    splits = [load_feature_split(folder, cache_dir=tmp_path / "cache", progress=False, val_fraction=0.2,
                                 in_memory=flag) for flag in (True, False)]
    assert isinstance(splits[1].x_train, StoredFeatures) and isinstance(splits[0].x_train, torch.Tensor)
    norm = FeatureNorm.fit(splits[0].x_train)
    splits = [split.standardized(norm) for split in splits]
    model = ModelConfig(width=4, depth=1)
    config = ExpertConfig(num_experts=2, epochs=2, batch_size=8, model=model, compile=False)
    trajs = []
    for k, split in enumerate(splits):
        train_experts(split, config, tmp_path / f"e{k}", progress=False)
        trajs.append(load_trajectories(tmp_path / f"e{k}", split.feature_config))
    for a, b in zip(trajs[0].params, trajs[1].params):
        assert torch.equal(a, b)
    ev = EvalConfig(num_nets=1, epochs=2, batch_size=8, compile=False)
    results = []
    for split in splits:
        xs, ys = random_real_subset(split.x_train, split.y_train, 2, seed=0)
        results.append(evaluate_training_set(xs, ys, split.x_test, split.y_test, model, ev, x_val=split.x_val,
                                             y_val=split.y_val)["accs"])
    assert results[0] == results[1]
    # distillation, and the first two channels only (the ablation rows of a run), read from the store too
    from ddfad_fast.config import DistillConfig
    from ddfad_fast.train.distill import distill
    dc = DistillConfig(cpc=1, syn_steps=2, expert_epochs=1, max_start_epoch=0, iterations=2, batch_syn=2,
                       compile=False, eval_every=0)
    got = [distill(split.x_train, split.y_train, trajs[0], dc, progress=False) for split in splits]
    assert torch.equal(got[0].features, got[1].features) and got[0].alpha == got[1].alpha
    two = [evaluate_training_set(first_channels(split.x_train, 2), split.y_train, first_channels(split.x_test, 2),
                                 split.y_test, model, ev)["accs"] for split in splits]
    assert two[0] == two[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_features_write_the_store_one_process_writes(tmp_path, interrupt_call):
    """2 ranks (gloo) take disjoint shards and rank 0 writes the index: every file of the store equals,
    byte for byte, the store of a single process; here the 2 ranks resume a store whose build by one
    process was interrupted after 2 of its 5 shards."""
    folder = class_folder(tmp_path / "d", broken=1)
    items, _ = labelled_items(folder, FeatureConfig())
    build_interrupted(items, tmp_path / "two", interrupt_call)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["features", "--data", str(folder), "--shard-size", "4", "--workers", "0", "--quiet"]
    single = subprocess.run([sys.executable, "-m", "ddfad_fast.cli", *common, "--store", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
                          "-m", "ddfad_fast.cli", *common, "--store", str(tmp_path / "two"), "--resume"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and "index.json" in names
    assert len([n for n in names if n.endswith(".npy")]) == 5
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert "zz_broken0.wav" in single.stdout


def test_run_reading_features_from_the_store_equals_the_run_in_memory(tmp_path):
    """The whole `ddfad run` (experts, distillation, baselines incl. herding, full data, report) with the
    features left in their store gives the numbers and the distilled set of the run with them in memory."""
    from ddfad_fast.cli import main
    from ddfad_fast.io import load_artifact
    folder = class_folder(tmp_path / "d", per_class=10)
    tiny = ["--cpc", "1", "--width", "4", "--depth", "1", "--num-experts", "1", "--expert-epochs", "3",
            "--expert-batch-size", "8", "--iterations", "3", "--syn-steps", "2", "--max-start-epoch", "1",
            "--no-compile", "--num-nets", "1", "--eval-steps", "4", "--full-epochs", "1", "--no-audio",
            "--threads", "1", "--device", "cpu"]
    for where in ("memory", "store"):
        assert main(["run", "--data", str(folder), "--out", str(tmp_path / where), "--features-in", where,
                     *tiny]) == 0
    a, b = (json.loads((tmp_path / w / "report.json").read_text()) for w in ("memory", "store"))
    assert a["accuracy"] == b["accuracy"]
    da, db = (load_artifact(tmp_path / w / "cpc1" / "distilled.pt") for w in ("memory", "store"))
    assert torch.equal(da["features"], db["features"])


def test_memory_limits_of_the_training_commands(tmp_path, capsys):
    """--max-memory: the features stay in memory when they fit beside training, in their store when only
    training fits, and a limit below what training needs is refused before anything runs."""
    from ddfad_fast.cli import main
    from ddfad_fast.train.memory import features_in_memory, training_bytes
    assert features_in_memory(10, 5, 1.0, 100) is True
    assert features_in_memory(2 ** 30, 5, 1.0, 100) is False
    with pytest.raises(ResourceError, match=r"0.50 GB for a step.*--max-memory 0.25 GB"):
        features_in_memory(10, 2 ** 29, 0.25, 0)
    small, large = (training_bytes(ModelConfig(width=w, depth=3), (3, 20, 126), 35, 64) for w in (32, 128))
    assert 0 < small < large
    folder = class_folder(tmp_path / "d")
    assert main(["experts", "--data", str(folder), "--out", str(tmp_path / "e"), "--max-memory", "0.05",
                 "--num-experts", "1", "--epochs", "1", "--no-compile"]) == 2
    err = capsys.readouterr().err
    assert "GB already in use" in err and "--max-memory 0.05 GB" in err and not (tmp_path / "e").exists()


def test_data_info_reports_class_counts_imbalance_and_skipped_files(tmp_path, capsys):
    from ddfad_fast.cli import main
    folder = class_folder(tmp_path / "d", per_class=6, broken=2)
    for i in range(6):                                   # class c2 twice as large: imbalance 2.0
        write_clip(folder / "c2" / f"extra{i}.wav", 700 + i, 0.3, seed=100 + i)
    assert main(["data", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "3 classes" in out and "largest / smallest class): 11 / 5 = 2.20" in out and "(imbalanced" in out
    assert out.count("skipped ") == 2 and "2 file(s) skipped" in out


def test_features_fill_the_cache_a_run_then_uses(tmp_path, capsys, monkeypatch):
    """`ddfad features --data D --cache R/cache` computes the store `ddfad run --out R` reads: the run computes
    no feature (and accepts the folder that holds only its cache)."""
    from ddfad_fast.cli import main
    folder = class_folder(tmp_path / "d", per_class=8)
    assert main(["features", "--data", str(folder), "--cache", str(tmp_path / "r" / "cache"), "--quiet"]) == 0
    assert main(["features", "--data", str(folder), "--cache", str(tmp_path / "r" / "cache"), "--quiet"]) == 0
    assert "up to date" in capsys.readouterr().out
    monkeypatch.setattr(store_module, "fd_mfcc", lambda *a, **k: pytest.fail("features computed again"))
    assert main(["run", "--data", str(folder), "--out", str(tmp_path / "r"), "--cpc", "1", "--width", "4",
                 "--depth", "1", "--num-experts", "1", "--expert-epochs", "3", "--iterations", "1",
                 "--syn-steps", "1", "--max-start-epoch", "1", "--no-compile", "--num-nets", "1", "--eval-steps",
                 "2", "--full-epochs", "1", "--no-audio", "--device", "cpu", "--threads", "1"]) == 0


def test_memory_in_use_leaves_out_the_page_cache_of_mapped_shards(tmp_path):
    """Reading a memory-mapped shard fills VmRSS with file pages the kernel can reclaim; the memory that
    --max-memory plans against (process_rss_bytes) does not grow with them."""
    from ddfad_fast.resources import process_rss_bytes
    path = tmp_path / "big.npy"
    np.save(path, np.ones((64, 2 ** 20 // 4), dtype=np.float32))          # 64 MB
    before = process_rss_bytes()
    mapped = np.load(path, mmap_mode="r")
    assert float(mapped.sum()) == 64 * 2 ** 18                               # every page read
    assert process_rss_bytes() - before < 16 * 2 ** 20


def test_memory_in_use_without_proc_is_an_upper_bound_said_once(monkeypatch, tmp_path):
    """No /proc (not Linux): the peak resident set stands in, with a warning; never 0 (an empty process)."""
    import warnings

    import ddfad_fast.resources as resources
    monkeypatch.setattr(resources, "PROC_STATUS", str(tmp_path / "no_such_status"))
    monkeypatch.setattr(resources, "_WARNED_NO_PROC", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = resources.process_rss_bytes(), resources.process_rss_bytes()
    assert first > 50 * 2 ** 20 and second >= first          # torch alone holds more than that
    notes = [str(w.message) for w in caught if "peak resident set" in str(w.message)]
    assert len(notes) == 1 and "no_such_status" in notes[0]
    monkeypatch.setitem(__import__("sys").modules, "resource", None)        # no getrusage either (Windows)
    with pytest.raises(resources.ResourceError, match="cannot tell the memory.*no_such_status"):
        resources.process_rss_bytes()
