"""Benchmark the CPU MFCC backends against librosa called per clip (and our reference when present).

Prints a table and writes bench/results/features.json. ``--quick`` uses fewer repeats.
Usage: python bench/features.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, time_call, write_json  # noqa: E402

from ddfad_fast import backends  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402

FSDD = Path("/work/shared/data/fsdd/recordings")


def _clips(cfg: FeatureConfig, batch: int) -> np.ndarray:
    """``batch`` FSDD clips padded/cropped to the preset length (resampled for 16 kHz), float32."""
    import librosa
    import soundfile
    files = sorted(FSDD.glob("*.wav"))[:batch]
    out = np.zeros((batch, cfg.fixed_length), dtype=np.float32)
    for i, path in enumerate(files):
        y, sr = soundfile.read(path, dtype="float32")
        if sr != cfg.sample_rate:
            y = librosa.resample(y, orig_sr=sr, target_sr=cfg.sample_rate)
        n = min(y.size, cfg.fixed_length)
        out[i, :n] = y[:n]
    return out


def _librosa_mfcc(waves: np.ndarray, cfg: FeatureConfig) -> None:
    import librosa
    for clip in waves:
        y = librosa.effects.preemphasis(clip, coef=cfg.preemphasis)
        spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                   window=cfg.window, center=True, pad_mode="constant")) ** 2
        mel = librosa.feature.melspectrogram(S=spec, sr=cfg.sample_rate, n_mels=cfg.n_mels, norm="slaney")
        librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=cfg.top_db), n_mfcc=cfg.n_mfcc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 20")
    args = parser.parse_args()
    repeats = 3 if args.quick else 20
    rows = []
    for preset, cfg in (("fsdd8k", FeatureConfig()), ("speech16k", FeatureConfig.speech16k())):
        for batch in (1, 64, 256):
            waves = _clips(cfg, batch)
            tensor = torch.from_numpy(waves)
            lib = time_call(lambda: _librosa_mfcc(waves, cfg), repeats=repeats)["median_s"]
            rows.append({"op": "mfcc", "preset": preset, "B": batch, "impl": "librosa", "ms": lib * 1e3,
                         "clips_per_s": batch / lib, "x_librosa": 1.0})
            for name in backends.candidates("mfcc", "cpu"):
                fn = backends.get("mfcc", "cpu", backend=name)[1]
                t = time_call(lambda: fn(tensor, cfg), repeats=repeats)["median_s"]
                rows.append({"op": "mfcc", "preset": preset, "B": batch, "impl": name, "ms": t * 1e3,
                             "clips_per_s": batch / t, "x_librosa": lib / t})
    print_table(rows, ["op", "preset", "B", "impl", "ms", "clips_per_s", "x_librosa"])
    print("wrote", write_json("features", rows, {"repeats": repeats, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
