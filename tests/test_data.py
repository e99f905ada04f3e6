"""Datasets: FSDD naming, class folders, CSV manifests, skipping bad files, the feature cache, fetch extraction."""
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ddfad_fast.data.sources as data
import ddfad_fast.data.store as store_module
from ddfad_fast.config import FeatureConfig
from ddfad_fast.data import FeatureNorm, FeatureSplit, carve_validation, discover, extract_recordings, load_feature_split
from ddfad_fast.errors import AudioFileError, FileFormatError, ParameterError

SR = 8000


def write_tone(path: Path, freq: float, seconds: float = 0.3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR)
    return path


def fsdd_like(folder: Path) -> Path:
    for label in ("0", "1", "2"):
        for index in (0, 1, 5, 6, 7):
            write_tone(folder / f"{label}_spk_{index}.wav", 200 + 300 * int(label), seed=index)
    (folder / "notes_readme.wav").write_bytes(b"x")          # name does not parse
    (folder / "1_spk_9.wav").write_bytes(b"not a wav file")  # unreadable
    (folder / "readme.txt").write_text("ignored")
    return folder


def test_fsdd_discovery_and_split(tmp_path):
    items, skipped = discover(fsdd_like(tmp_path))
    assert len(items) == 16 and [s[0] for s in skipped] == [str(tmp_path / "notes_readme.wav")]
    test = sorted(it.path.name for it in items if it.split == "test")
    assert test == sorted(f"{l}_spk_{i}.wav" for l in "012" for i in (0, 1))


def test_load_fsdd_like_skips_bad_files(tmp_path):
    split = load_feature_split(fsdd_like(tmp_path), progress=False)
    assert split.class_names == ["0", "1", "2"]
    assert split.x_train.shape == (9, 3, 20, 101) and split.x_test.shape == (6, 3, 20, 101)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert torch.bincount(split.y_train).tolist() == [3, 3, 3]
    reasons = dict(split.skipped)
    assert set(reasons) == {str(tmp_path / "notes_readme.wav"), str(tmp_path / "1_spk_9.wav")}
    with pytest.raises(AudioFileError, match="1_spk_9.wav"):
        load_feature_split(tmp_path, strict=True, progress=False)


def test_features_match_per_clip_fd_mfcc(fsdd_dir):
    """Batched dataset features equal fd_mfcc of each clip loaded and padded on its own."""
    from ddfad_fast import fd_mfcc, load_audio
    config = FeatureConfig()
    split = load_feature_split(fsdd_dir, config, progress=False, max_per_class=1)
    assert split.class_names == [str(d) for d in range(10)]
    assert split.x_train.shape == (10, 3, 20, 101) and split.x_test.shape == (10, 3, 20, 101)
    items, _ = discover(fsdd_dir)
    first = data._limit_per_class(items, 1)
    train = [it for it in first if it.split == "train"]
    for k, it in enumerate(train):
        wave, _ = load_audio(it.path, sample_rate=SR)
        wave = torch.nn.functional.pad(wave, (0, max(0, SR - wave.numel())))[:SR]
        ref = fd_mfcc(wave[None].float(), SR, config)[0]
        torch.testing.assert_close(split.x_train[k], ref, atol=5e-4, rtol=1e-5)
        assert split.y_train[k] == int(it.label)


def test_class_folders_seeded_split(tmp_path):
    for label in ("cat", "dog"):
        for i in range(20):
            write_tone(tmp_path / label / f"{i:02d}.wav", 300 if label == "cat" else 900, 0.1, seed=i)
    items, _ = discover(tmp_path)
    a = data._assign_splits(items)
    b = data._assign_splits(items)
    assert a == b
    for label in ("cat", "dog"):
        assert sum(1 for it in a if it.label == label and it.split == "test") == 2
    split = load_feature_split(tmp_path, progress=False, max_per_class=5)
    assert split.class_names == ["cat", "dog"] and len(split.y_train) == 10 and len(split.y_test) == 4


def test_csv_manifest(tmp_path):
    write_tone(tmp_path / "a.wav", 300)
    write_tone(tmp_path / "sub" / "b.wav", 900)
    write_tone(tmp_path / "c.wav", 600)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,split\na.wav,low,train\nsub/b.wav,high,train\n"
                        f"{tmp_path / 'c.wav'},low,test\nc.wav,high,validation\nonlypath\n")
    items, skipped = discover(manifest)
    assert [(it.path, it.label, it.split) for it in items] == [
        (tmp_path / "a.wav", "low", "train"), (tmp_path / "sub" / "b.wav", "high", "train"),
        (tmp_path / "c.wav", "low", "test")]
    assert len(skipped) == 2 and "validation" in skipped[0][1] and "path,label" in skipped[1][1]
    split = load_feature_split(manifest, progress=False)
    assert split.class_names == ["high", "low"] and split.y_train.tolist() == [1, 0] and split.y_test.tolist() == [1]


def test_cache_is_keyed_by_config_and_files(tmp_path, monkeypatch):
    folder = fsdd_like(tmp_path / "d")
    cache = tmp_path / "cache"
    first = load_feature_split(folder, cache_dir=cache, progress=False)
    assert len(list(cache.glob("store_*/index.json"))) == 1
    real_compute = store_module._compute_shards

    def no_extract(*args, **kwargs):
        raise AssertionError("cache not used")

    monkeypatch.setattr(store_module, "_compute_shards", no_extract)
    again = load_feature_split(folder, cache_dir=cache, progress=False)
    assert torch.equal(first.x_train, again.x_train) and again.skipped == first.skipped
    with pytest.raises(AssertionError, match="cache not used"):
        load_feature_split(folder, FeatureConfig(n_mfcc=13), cache_dir=cache, progress=False)
    path = folder / "2_spk_7.wav"
    write_tone(path, 123.0)
    os.utime(path, ns=(1, 1))
    with pytest.raises(AssertionError, match="cache not used"):
        load_feature_split(folder, cache_dir=cache, progress=False)
    monkeypatch.setattr(store_module, "_compute_shards", real_compute)
    other = load_feature_split(folder, FeatureConfig(n_mfcc=13), cache_dir=cache, progress=False)
    assert other.x_train.shape[2] == 13 and len(list(cache.glob("store_*/index.json"))) == 2


@pytest.mark.parametrize("bad", ["resampled", "skipped"])
def test_cache_made_without_strict_does_not_satisfy_a_strict_load(tmp_path, bad):
    """A cache built without strict (a file resampled or skipped) is not used by a strict load: that load
    reads the files again and refuses the bad one; the lenient cache is still used by lenient loads."""
    folder = tmp_path / "d"
    for label in ("0", "1"):
        for index in (0, 5, 6):
            write_tone(folder / f"{label}_spk_{index}.wav", 200 + 300 * int(label), seed=index)
    odd = folder / "1_spk_7.wav"
    if bad == "resampled":
        t = np.arange(int(2 * SR * 0.3)) / (2 * SR)
        sf.write(odd, (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), 2 * SR)
        why = "sample rate 16000 Hz, expected 8000 Hz"
    else:
        odd.write_bytes(b"not a wav file")
        why = "not a readable audio file"
    cache = tmp_path / "cache"
    lenient = load_feature_split(folder, cache_dir=cache, progress=False)
    assert len(lenient.y_train) == (5 if bad == "resampled" else 4)
    assert len(list(cache.glob("store_*/index.json"))) == 1
    with pytest.raises(AudioFileError, match=f"1_spk_7.wav: {why}"):
        load_feature_split(folder, cache_dir=cache, strict=True, progress=False)
    again = load_feature_split(folder, cache_dir=cache, progress=False)
    assert torch.equal(again.x_train, lenient.x_train) and again.skipped == lenient.skipped


def test_bad_sources(tmp_path):
    with pytest.raises(ParameterError, match="neither"):
        load_feature_split(tmp_path / "missing", progress=False)
    with pytest.raises(ParameterError, match="no labelled audio"):
        load_feature_split(tmp_path, progress=False)
    with pytest.raises(ParameterError, match="fixed_length"):
        load_feature_split(tmp_path, FeatureConfig(fixed_length=None), progress=False)


def _zip(path: Path, names):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(name, b"RIFF....")
    return path


def test_extract_recordings(tmp_path):
    names = [f"free-spoken-digit-dataset-master/recordings/{d}_george_{i}.wav" for d in range(3) for i in range(2)]
    archive = _zip(tmp_path / "fsdd.zip", names + ["free-spoken-digit-dataset-master/README.md"])
    out = extract_recordings(archive, tmp_path / "rec", expected_count=6)
    assert sorted(p.name for p in out) == sorted(Path(n).name for n in names)
    assert (tmp_path / "rec" / "2_george_1.wav").read_bytes() == b"RIFF...."
    with pytest.raises(FileFormatError, match="6 recordings, expected 3000"):
        extract_recordings(archive, tmp_path / "rec2")
    (tmp_path / "bad.zip").write_bytes(b"nope")
    with pytest.raises(FileFormatError, match="bad.zip"):
        extract_recordings(tmp_path / "bad.zip", tmp_path / "rec3")


def test_feature_norm_per_channel_and_coefficient():
    scale = torch.tensor([50.0, 2.0, 0.5]).view(1, 3, 1, 1) * torch.linspace(1, 10, 4).view(1, 1, 4, 1)
    x = torch.randn(7, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * scale + 3.0
    norm = FeatureNorm.fit(x)
    assert norm.mean.shape == norm.std.shape == (3, 4, 1)
    z = norm.apply(x)
    torch.testing.assert_close(z.mean(dim=(0, 3)), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 3)), torch.ones(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.invert(z), x, atol=1e-4, rtol=1e-5)
    again = FeatureNorm.from_payload(norm.to_payload())
    assert torch.equal(again.mean, norm.mean) and torch.equal(again.std, norm.std)
    with pytest.raises(ParameterError, match="do not match"):
        norm.apply(torch.zeros(2, 3, 5, 5))
    with pytest.raises(FileFormatError, match="standardisation"):
        FeatureNorm.from_payload({}, "x.pt")


def _speaker_split(per_group: int = 10):
    labels, speakers = [], []
    for c in range(3):
        for s in ("ann", "bob"):
            labels += [c] * per_group
            speakers += [s] * per_group
    y = torch.tensor(labels)
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 4).contiguous()
    return FeatureSplit(x, y, x[:3], y[:3], ["a", "b", "c"], FeatureConfig(), [], speakers)


def test_validation_split_is_stratified_seeded_and_disjoint():
    split = _speaker_split()
    val = carve_validation(split, 0.2)
    assert len(val.y_val) == 12 and len(val.y_train) == 48                  # 2 of every (class, speaker) of 10
    ids_val = set(val.x_val[:, 0, 0, 0].long().tolist())
    ids_train = set(val.x_train[:, 0, 0, 0].long().tolist())
    assert not ids_val & ids_train and len(ids_val | ids_train) == 60
    for c in range(3):
        for s in ("ann", "bob"):
            group = {i for i, (l, sp) in enumerate(zip(split.y_train.tolist(), split.speakers_train)) if l == c and sp == s}
            assert len(group & ids_val) == 2
    assert torch.equal(carve_validation(split, 0.2).x_val, val.x_val)                 # seeded
    assert not torch.equal(carve_validation(split, 0.2, seed=1).x_val, val.x_val)
    assert val.speakers_train.count("ann") == 24 and val.monitor_set()[0] == "val"
    with pytest.raises(ParameterError, match="already has"):
        carve_validation(val, 0.2)
    with pytest.raises(ParameterError, match="fraction"):
        carve_validation(split, 1.0)
    std = val.standardized()
    torch.testing.assert_close(std.norm.invert(std.x_val), val.x_val)
    with pytest.raises(ParameterError, match="already standardised"):
        std.standardized()
    moved = std.to("meta")                          # every feature and label tensor follows; the rest is shared
    assert {t.device.type for t in (moved.x_train, moved.y_train, moved.x_test, moved.y_test, moved.x_val,
                                    moved.y_val)} == {"meta"}
    assert moved.norm is std.norm and moved.speakers_train == std.speakers_train and std.x_train.device.type == "cpu"


def test_fsdd_validation_split_by_class_and_speaker(tmp_path):
    """FSDD names speakers: the validation split takes the same share of every (digit, speaker)."""
    rng = np.random.default_rng(0)
    for digit in range(2):
        for speaker in ("jackson", "theo"):
            for index in range(12):
                sf.write(tmp_path / f"{digit}_{speaker}_{index}.wav", (0.1 * rng.standard_normal(800)).astype("float32"),
                         8000)
    split = load_feature_split(tmp_path, FeatureConfig(fixed_length=800), progress=False, val_fraction=0.15)
    assert len(split.y_test) == 20 and len(split.y_val) == 4 and len(split.y_train) == 24   # 7 train clips -> 1 val each
    assert sorted(split.speakers_train).count("theo") == 12
