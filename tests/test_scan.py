"""Features that fit the data: the header scan, the rule that picks rate and duration, the warnings, the CLI."""
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from ddfad_fast.data.scan import (ClipScan, choose_features, duration_for, preset_for_rate, scan_clips,  # noqa: E402
                                  scan_source)

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb" / "split.csv"


def _folder(root: Path, sr: int, seconds, classes=2) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for k, s in enumerate(seconds):
            sf.write(root / f"c{c}" / f"{k}.wav", 0.1 * rng.standard_normal(int(sr * s)).astype(np.float32), sr)
    return root


def _scan(rates_seconds):
    rates = {}
    for rate, _ in rates_seconds:
        rates[rate] = rates.get(rate, 0) + 1
    return ClipScan(rates, tuple(sorted(s for _, s in rates_seconds)), len(rates_seconds))


def test_fsdd_keeps_its_preset(fsdd_dir):
    """FSDD: 8 kHz, 90th percentile 0.60 s -> the FSDD preset exactly (8 kHz, 1 s), nothing to warn about."""
    scan = scan_source(fsdd_dir)
    assert scan.rates == {8000: 3000} and 0.55 < scan.quantile(0.9) < 0.65
    choice = choose_features(scan)
    assert choice.config == choice.config.fsdd() and choice.preset == "fsdd" and not choice.warnings
    assert choice.inferred == ("rate", "duration") and choice.crop_share < 0.01


@pytest.mark.skipif(not EMODB.is_file(), reason="EmoDB not found")
def test_emodb_gets_16k_and_2s():
    choice = choose_features(scan_source(EMODB))
    assert choice.config.sample_rate == 16000 and choice.config.fixed_length == 32000 and not choice.warnings
    assert "16000 Hz, 2 s clips (speech16k, rate and duration inferred" in choice.line()
    forced = choose_features(scan_source(EMODB), preset="fsdd", duration=1.0)
    assert forced.config == forced.config.fsdd() and len(forced.warnings) == 2
    assert "crop 50 % of the audio" in forced.warnings[0] and "16000 Hz audio down to 8000 Hz" in forced.warnings[1]


@pytest.mark.parametrize("rate,preset", [(8000, "fsdd"), (11025, "fsdd"), (16000, "speech16k"), (44100, "speech16k"),
                                         (48000, "speech16k"), (4000, "fsdd")])
def test_rate_rule(rate, preset):
    assert preset_for_rate(rate) == preset


@pytest.mark.parametrize("p90,seconds", [(0.3, 1.0), (1.0, 1.0), (1.02, 1.0), (1.05, 2.0), (2.0, 2.0), (2.01, 2.0),
                                         (2.5, 3.0), (9.0, 4.0)])
def test_duration_rule(p90, seconds):
    assert duration_for(_scan([(16000, p90)] * 10)) == seconds


def test_explicit_flags_win_and_warn_with_numbers():
    scan = _scan([(44100, 3.0)] * 20)
    inferred = choose_features(scan)
    assert inferred.config.sample_rate == 16000 and inferred.duration == 3.0 and not inferred.warnings
    short = choose_features(scan, duration=1.0)
    assert short.duration == 1.0 and short.inferred == ("rate",)
    assert short.warnings == ("1 s clips crop 67 % of the audio away (more than 10 %; 90th percentile of the clip "
                              "lengths 3.00 s, longest 3.00 s)",)
    padded = choose_features(_scan([(8000, 0.2)] * 20), duration=2.0)
    assert padded.warnings and "90 % zero padding" in padded.warnings[0]
    low = choose_features(scan, preset="fsdd")
    assert low.config.sample_rate == 8000 and low.duration == 3.0
    assert low.warnings == ("resampling 44100 Hz audio down to 8000 Hz discards everything above 4000 Hz "
                            "(16000 Hz would keep up to 8000 Hz)",)


def test_scan_samples_large_lists_and_counts_unreadable(tmp_path):
    folder = _folder(tmp_path / "d", 16000, [0.5, 1.5, 2.5])
    (folder / "c0" / "bad.wav").write_bytes(b"not audio")
    files = sorted(folder.rglob("*.wav"))
    scan = scan_clips(files)
    assert scan.unreadable == 1 and scan.rates == {16000: 6} and scan.total == 7
    assert scan_clips(files, limit=3).scanned == 3
    assert scan_clips([folder / "c0" / "bad.wav"]) is None


def test_cli_data_info_and_features_say_what_they_chose(tmp_path, capsys):
    from ddfad_fast.cli import main
    folder = _folder(tmp_path / "d", 16000, [1.6, 1.8, 1.9, 1.7, 1.8, 1.9, 1.8, 1.9, 1.85, 1.9, 1.8, 1.75])
    assert main(["data", "info", str(folder), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "features: 16000 Hz, 2 s clips (speech16k, rate and duration inferred" in out and "3, 20, 251)" in out
    assert main(["features", "--data", str(folder), "--store", str(tmp_path / "s"), "--workers", "0", "--quiet",
                 "--duration", "1"]) == 0
    captured = capsys.readouterr()
    assert "features: 16000 Hz, 1 s clips (speech16k, rate inferred, duration as given" in captured.out
    assert "warning: 1 s clips crop 45 % of the audio away" in captured.err
    assert "(24, 3, 20, 126)" in captured.out
