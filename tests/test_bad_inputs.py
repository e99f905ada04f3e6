"""A corpus of deliberately broken and unusual audio files, generated here, through every entry point.

Each case has a documented outcome: skipped with a reason (listed in the report), or read (with
resampling / channel mixing / pad-crop). ``strict`` turns the first skip into an error.
"""
import numpy as np
import pytest
import soundfile as sf
import torch

from ddfad_fast import AudioFileError, FeatureConfig
from ddfad_fast.cli import main
from ddfad_fast.data import discover, load_feature_split
from ddfad_fast.io import load_artifact

SR = 8000


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 300 * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size))


def build_corpus(folder):
    """FSDD-named files: (name -> expected reason substring, or None when the file is read)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}

    def write(name, data, sr=SR, subtype="PCM_16", fmt=None, outcome=None):
        sf.write(folder / name, data, sr, subtype=subtype, format=fmt)
        expected[name] = outcome

    for label in "01":                       # good clips in train (index >= 5) and test (index < 5)
        for index in (0, 5, 6):
            write(f"{label}_good_{index}.wav", speech_like(0.5, seed=index))
    write("0_pcm8_7.wav", speech_like(0.4), subtype="PCM_U8")
    write("0_pcm24_8.wav", speech_like(0.4), subtype="PCM_24")
    write("0_pcm32_9.wav", speech_like(0.4), subtype="PCM_32")
    write("1_float_7.wav", speech_like(0.4), subtype="FLOAT")
    write("1_stereo_8.wav", np.stack([speech_like(0.4), speech_like(0.4, seed=1)], axis=1))
    write("1_rate16k_9.wav", speech_like(0.4, sr=16000), sr=16000)
    write("0_silence_10.wav", np.zeros(3000))
    write("0_long_11.wav", speech_like(3.0))                  # cropped to the fixed length
    write("1_tiny_10.wav", speech_like(0.001))                # 8 samples: shorter than one window
    write("1_flac_11.flac", speech_like(0.4), fmt="FLAC")
    nan = speech_like(0.4)
    nan[100] = np.nan
    write("0_nan_12.wav", nan, subtype="FLOAT", outcome="non-finite")
    inf = speech_like(0.4)
    inf[5] = np.inf
    write("1_inf_12.wav", inf, subtype="FLOAT", outcome="non-finite")
    write("0_empty_13.wav", np.zeros(0), outcome="empty")
    (folder / "1_text_13.wav").write_text("RIFF? no, just text")
    expected["1_text_13.wav"] = "not a readable audio file"
    (folder / "0_zero_14.wav").write_bytes(b"")
    expected["0_zero_14.wav"] = "empty file (0 bytes)"
    good = folder / "0_good_5.wav"
    (folder / "1_truncated_14.wav").write_bytes(good.read_bytes()[:40])
    expected["1_truncated_14.wav"] = "not a readable audio file"
    long = folder / "0_long_11.wav"            # 24,000 frames declared; the data cut after 228 of them
    raw = long.read_bytes()
    (folder / "0_cut_15.wav").write_bytes(raw[:raw.index(b"data") + 8 + 228 * 2])
    expected["0_cut_15.wav"] = "truncated: header declares 24000 frames, data holds 228"
    (folder / "digits.wav").write_bytes(good.read_bytes())     # name does not parse as {label}_{speaker}_{index}
    expected["digits.wav"] = "does not match"
    (folder / "x_y_z.wav").write_bytes(good.read_bytes())      # index is not a number
    expected["x_y_z.wav"] = "does not match"
    return expected


def test_corpus_through_the_dataset_loader(tmp_path):
    folder = tmp_path / "corpus"
    expected = build_corpus(folder)
    split = load_feature_split(folder, FeatureConfig(), progress=False)
    reasons = {str(p).rsplit("/", 1)[-1]: r for p, r in split.skipped}
    bad = {name: why for name, why in expected.items() if why is not None}
    assert set(reasons) == set(bad), (sorted(reasons), sorted(bad))
    for name, why in bad.items():
        assert why in reasons[name], (name, reasons[name])
    n_read = sum(1 for why in expected.values() if why is None)
    assert len(split.y_train) + len(split.y_test) == n_read
    assert split.x_train.shape[1:] == (3, 20, 101) and bool(torch.isfinite(split.x_train).all())
    with pytest.raises(AudioFileError):
        load_feature_split(folder, FeatureConfig(), progress=False, strict=True)


def test_strict_refuses_a_truncated_file(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "0_a_5.wav", speech_like(0.4), SR, subtype="PCM_16")
    sf.write(folder / "1_b_5.wav", speech_like(0.4), SR, subtype="PCM_16")
    raw = (folder / "1_b_5.wav").read_bytes()
    (folder / "1_b_5.wav").write_bytes(raw[:raw.index(b"data") + 8 + 228 * 2])
    assert main(["features", str(folder), "--out", str(tmp_path / "f.pt"), "--quiet"]) == 0
    assert "1_b_5.wav: truncated: header declares 3200 frames, data holds 228" in capsys.readouterr().out
    assert len(load_artifact(tmp_path / "f.pt", kind="features")["paths"]) == 1
    assert main(["features", str(folder), "--out", str(tmp_path / "g.pt"), "--quiet", "--strict"]) == 1
    assert "1_b_5.wav: truncated" in capsys.readouterr().err
    with pytest.raises(AudioFileError, match="1_b_5.wav: truncated"):
        load_feature_split(folder, FeatureConfig(), progress=False, strict=True)


def test_corpus_through_the_features_command(tmp_path, capsys):
    folder = tmp_path / "corpus"
    expected = build_corpus(folder)
    out = tmp_path / "f.pt"
    assert main(["features", str(folder), "--out", str(out), "--quiet"]) == 0
    obj = load_artifact(out, kind="features")
    skipped = {p.rsplit("/", 1)[-1] for p, _ in obj["skipped"]}
    unreadable = {n for n, why in expected.items() if why is not None and why != "does not match"}
    assert skipped == unreadable                      # names do not matter here; the flac file is read
    assert len(obj["paths"]) == len(list(folder.iterdir())) - len(unreadable)
    printed = capsys.readouterr().out
    assert all(name in printed for name in unreadable)
    assert main(["features", str(folder), "--out", str(tmp_path / "g.pt"), "--quiet", "--strict"]) == 1


def test_strict_refuses_another_sample_rate_instead_of_resampling(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "0_a_5.wav", speech_like(0.4), SR, subtype="PCM_16")
    sf.write(folder / "1_b_5.wav", speech_like(0.4, sr=16000), 16000, subtype="PCM_16")
    assert main(["features", str(folder), "--out", str(tmp_path / "f.pt"), "--quiet"]) == 0
    assert len(load_artifact(tmp_path / "f.pt", kind="features")["paths"]) == 2      # resampled
    assert main(["features", str(folder), "--out", str(tmp_path / "g.pt"), "--quiet", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "1_b_5.wav" in err and "16000 Hz" in err and "8000 Hz" in err
    assert not (tmp_path / "g.pt").exists()


def test_discover_reports_unparseable_names(tmp_path):
    folder = tmp_path / "corpus"
    expected = build_corpus(folder)
    items, skipped = discover(folder)
    assert {s[0].rsplit("/", 1)[-1] for s in skipped} == {n for n, why in expected.items() if why == "does not match"}
    assert all(it.label in ("0", "1") for it in items)


def test_run_refuses_a_cpc_larger_than_the_smallest_class(tmp_path, capsys):
    folder = tmp_path / "corpus"
    build_corpus(folder)
    rc = main(["run", "--data", str(folder), "--cpc", "50", "--out", str(tmp_path / "run"), "--no-audio"])
    assert rc == 2
    assert "--cpc 50 exceeds the smallest class" in capsys.readouterr().err
