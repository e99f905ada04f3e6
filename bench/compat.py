"""Drop-in front ends vs the code they replace, on real FSDD clips (8 kHz, 1 s, float32):

* ``mfcc``: a script's per-clip loop ``librosa.feature.mfcc(y=clip, sr=8000, n_fft=256, hop_length=80,
  win_length=160, n_mels=40)`` over B clips, against the same loop through ``ddfad_fast.compat.librosa``,
  one batched compat call (librosa's shared top_db floor, as ``librosa.feature.mfcc`` on a batch), and the
  ``ddfad_fast.audio.transforms.MFCC`` module on the (B, L) batch (per-clip floor: the per-clip loop's results);
  torchaudio's MFCC transform on the batch where torchaudio imports beside this torch.
* ``mfcc+deltas``: the per-clip loop of ``librosa.feature.mfcc`` then ``feature.delta`` of order 1 and 2, against
  one batched compat call of each (the figure the compat front end is judged by: >= 20x).
* ``fd_mfcc``: ``transforms.FDMFCC`` on the batch vs torchaudio's MFCC + ``compute_deltas`` twice.
* ``griffinlim``: per-clip ``librosa.griffinlim`` (32 iterations, seeded) vs the compat loop and one
  batched compat call.

Median ms over --repeats timed runs after a warm-up; prints a table, writes compat.json (git commit, load
average). Usage: python bench/compat.py [--batch 256] [--repeats 5] [--out DIR] [--name compat] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, time_call, torchaudio_fd_mfcc, write_json  # noqa: E402

import ddfad_fast.compat.librosa as fast  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.audio.transforms import FDMFCC, MFCC  # noqa: E402

FSDD = Path(os.environ.get("DDFAD_FSDD_DIR",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"))
KW = dict(sr=8000, n_fft=256, hop_length=80, win_length=160, n_mels=40)


def clips(batch: int) -> np.ndarray:
    import soundfile
    files = sorted(FSDD.glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD clips in {FSDD}")
    return np.stack([np.resize(soundfile.read(files[(i * 37) % len(files)], dtype="float32")[0], 8000)
                     for i in range(batch)])


def _with_deltas(lib, coefficients: np.ndarray) -> tuple:
    """A script's features: MFCCs with their deltas of order 1 and 2 (``feature.delta``, width 9)."""
    return coefficients, lib.feature.delta(coefficients), lib.feature.delta(coefficients, order=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--gla-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="compat", help="JSON file name (default compat)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import librosa
    y = clips(args.batch)
    batch = torch.from_numpy(y)
    melkwargs = {"n_fft": 256, "win_length": 160, "hop_length": 80, "n_mels": 40}
    module, fd_module = MFCC(sample_rate=8000, n_mfcc=20, melkwargs=melkwargs), FDMFCC()
    config = FeatureConfig(fixed_length=None)
    candidates = {
        ("mfcc", "librosa per-clip loop"): lambda: [librosa.feature.mfcc(y=c, **KW) for c in y],
        ("mfcc", "compat per-clip loop"): lambda: [fast.feature.mfcc(y=c, **KW) for c in y],
        ("mfcc", "compat batched call"): lambda: fast.feature.mfcc(y=y, **KW),
        ("mfcc", "transforms.MFCC on the batch"): lambda: module(batch),
        ("mfcc+deltas", "librosa per-clip loop"): lambda: [_with_deltas(librosa, librosa.feature.mfcc(y=c, **KW))
                                                           for c in y],
        ("mfcc+deltas", "compat batched call"): lambda: _with_deltas(fast, fast.feature.mfcc(y=y, **KW)),
        ("fd_mfcc", "transforms.FDMFCC on the batch"): lambda: fd_module(batch),
    }
    anchor = torchaudio_fd_mfcc(config.replace(preemphasis=0.0))
    if anchor is not None:
        candidates[("fd_mfcc", "torchaudio MFCC + 2 compute_deltas")] = lambda: anchor(batch)
    S = np.abs(np.stack([librosa.stft(c, n_fft=256, hop_length=80, win_length=160) for c in y[:args.gla_batch]]))
    candidates.update({
        ("griffinlim", "librosa per-clip loop"): lambda: [
            librosa.griffinlim(s, n_iter=32, n_fft=256, hop_length=80, win_length=160, random_state=0) for s in S],
        ("griffinlim", "compat per-clip loop"): lambda: [
            fast.griffinlim(s, n_iter=32, n_fft=256, hop_length=80, win_length=160, random_state=0) for s in S],
        ("griffinlim", "compat batched call"): lambda: fast.griffinlim(S, n_iter=32, n_fft=256, hop_length=80,
                                                                       win_length=160, random_state=0),
    })
    rows, base = [], {}
    for (op, impl), fn in candidates.items():
        t = time_call(fn, repeats=args.repeats, warmup=1)
        ms = 1e3 * t["median_s"]
        base.setdefault(op, ms if "librosa" in impl else None)
        rows.append({"op": op, "impl": impl, "B": args.gla_batch if op == "griffinlim" else args.batch, "ms": ms})
    for r in rows:
        ref = base.get(r["op"]) or next((x["ms"] for x in rows if x["op"] == r["op"]), None)
        r["x_vs_first"] = ref / r["ms"] if ref else None
    print_table(rows, ["op", "impl", "B", "ms", "x_vs_first"])
    path = write_json(args.name, rows, {"settings": KW, "torchaudio_row": anchor is not None,
                                       "x_vs_first": "speed-up over the first row of the op (librosa's loop, or "
                                                     "FDMFCC where torchaudio is absent)"}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
