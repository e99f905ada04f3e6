"""Resampling: ours before (the torch windowed sinc, now ``resample_sinc``) vs ours now (``audio.resample``:
soxr HQ) vs soxr called directly vs scipy's resample_poly vs torchaudio (where it imports), in one run; and
loading plus resampling a 44.1 kHz corpus of one-second clips (``load_audio(path, sample_rate=16000)``).

Rate pairs 16 -> 8 kHz, 44.1 -> 16 kHz, 48 -> 8 kHz; one 2 s clip at a time on one thread (torch, soxr and
scipy single-threaded): median ms over the timed runs, the ratio of ours-before to each, and the accuracy of
each on band-limited audio: the max abs error against the exact resampled signal (tones at 440, 1500 and
3100 Hz, amplitude 1 / 0.5 / 0.33, error measured away from the first and last 10 % of the clip). Also soxr on
64 clips of one rate as one multichannel call against 64 calls (what ``resample_array`` does).

Corpus: ``--corpus N`` one-second 16-bit WAVs at 44.1 kHz (tones and noise) written to a temporary folder
(then read from the page cache), loaded and resampled to 16 kHz by 1 and 2 processes: clips/s.

Prints tables and writes resample.json to bench/results/ (or --out). Usage: python bench/resample.py
[--repeats N] [--corpus N] [--quick] [--out DIR]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, time_call, write_json  # noqa: E402

from ddfad_fast.audio.files import load_audio, resample, resample_sinc, resampled_length  # noqa: E402

PAIRS = [(16000, 8000), (44100, 16000), (48000, 8000)]
TONES = ((440.0, 1.0), (1500.0, 0.5), (3100.0, 0.33))


def tones(sr: int, n: int) -> np.ndarray:
    t = np.arange(n) / sr
    return sum(a * np.sin(2 * np.pi * f * t + k) for k, (f, a) in enumerate(TONES))


def implementations() -> Dict[str, Optional[Callable[[np.ndarray, int, int], np.ndarray]]]:
    import scipy.signal
    import soxr
    from math import gcd

    def poly(x, o, t):
        g = gcd(o, t)
        return scipy.signal.resample_poly(x, t // g, o // g)

    impls = {
        "ours_before_torch_sinc": lambda x, o, t: resample_sinc(torch.from_numpy(x), o, t).numpy(),
        "ours_now_soxr_hq": lambda x, o, t: resample(torch.from_numpy(x), o, t).numpy(),
        "soxr_hq_direct": lambda x, o, t: soxr.resample(x, o, t, quality="HQ"),
        "scipy_resample_poly": poly,
        "torchaudio": None,
    }
    try:
        import torchaudio.functional as taf
        impls["torchaudio"] = lambda x, o, t: taf.resample(torch.from_numpy(x), o, t).numpy()
    except Exception:
        pass
    return impls


def accuracy(y: np.ndarray, o: int, t: int, n_in: int) -> float:
    want = tones(t, y.shape[-1])
    lo, hi = int(0.1 * y.shape[-1]), int(0.9 * y.shape[-1])
    return float(np.abs(y[lo:hi] - want[lo:hi]).max())


def _load_all(paths: List[str]) -> float:
    """Load and resample ``paths``; the CPU seconds this process spent."""
    torch.set_num_threads(1)
    start = time.process_time()
    for p in paths:
        load_audio(p, sample_rate=16000)
    return time.process_time() - start


def corpus_rate(paths: List[str], processes: int) -> Dict[str, float]:
    """Clips per wall second with ``processes`` processes, and the CPU milliseconds per clip they spent (what
    a core free of other jobs would take: the wall rate on a shared machine counts other jobs' time too)."""
    chunks = [paths[i::processes] for i in range(processes)]
    start = time.perf_counter()
    if processes == 1:
        cpu = [_load_all(paths)]
    else:
        with mp.get_context("fork").Pool(processes) as pool:
            cpu = pool.map(_load_all, chunks)
    wall = time.perf_counter() - start
    return {"clips_per_s": len(paths) / wall, "cpu_ms_per_clip": 1e3 * sum(cpu) / len(paths)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--corpus", type=int, default=4000, help="one-second 44.1 kHz clips in the corpus test")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 400 corpus clips")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.corpus = 3, 400
    torch.set_num_threads(1)
    impls = implementations()
    rows: List[Dict[str, object]] = []
    for o, t in PAIRS:
        x = tones(o, 2 * o).astype(np.float32)
        for name, fn in impls.items():
            if fn is None:
                rows.append({"pair": f"{o}->{t}", "impl": name, "ms": None, "note": "not installed"})
                continue
            y = fn(x, o, t)
            timing = time_call(lambda: fn(x, o, t), repeats=args.repeats if "before" not in name else
                               max(3, args.repeats // 4), warmup=1)
            rows.append({"pair": f"{o}->{t}", "impl": name, "ms": 1e3 * timing["median_s"],
                         "max_abs_error": accuracy(np.asarray(y, dtype=np.float64), o, t, x.size),
                         "out_len": int(np.asarray(y).shape[-1]), "expected_len": resampled_length(x.size, o, t),
                         "repeats": timing["repeats"]})
        before = next(r["ms"] for r in rows if r["pair"] == f"{o}->{t}" and r["impl"] == "ours_before_torch_sinc")
        for r in rows:
            if r["pair"] == f"{o}->{t}" and r.get("ms"):
                r["before_over_this"] = before / r["ms"]
    print_table(rows, ["pair", "impl", "ms", "before_over_this", "max_abs_error", "out_len"])

    import soxr
    batch_rows = []
    for o, t in PAIRS:
        x = np.ascontiguousarray(np.stack([tones(o, o) for _ in range(64)]).astype(np.float32))
        inter = np.ascontiguousarray(x.T)
        per_row = time_call(lambda: [soxr.resample(r, o, t, quality="HQ") for r in x], repeats=max(3, args.repeats // 2))
        multi = time_call(lambda: soxr.resample(inter, o, t, quality="HQ"), repeats=max(3, args.repeats // 2))
        batch_rows.append({"pair": f"{o}->{t}", "clips": 64, "seconds_each": 1.0,
                           "per_row_calls_ms": 1e3 * per_row["median_s"], "one_multichannel_call_ms": 1e3 * multi["median_s"]})
    print()
    print_table(batch_rows, ["pair", "clips", "per_row_calls_ms", "one_multichannel_call_ms"])

    import soundfile
    corpus: Dict[str, object] = {}
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for k in range(args.corpus):
            wave = 0.3 * tones(44100, 44100) / 1.83 + 0.01 * rng.standard_normal(44100)
            path = f"{tmp}/{k:05d}.wav"
            soundfile.write(path, wave.astype(np.float32), 44100, subtype="PCM_16")
            paths.append(path)
        _load_all(paths[:50])                                        # warm-up
        one, two = corpus_rate(paths, 1), corpus_rate(paths, 2)
        corpus = {"clips": len(paths), "seconds_each": 1.0, "rate": 44100, "to": 16000,
                  "clips_per_s_1_process": one["clips_per_s"], "clips_per_s_2_processes": two["clips_per_s"],
                  "cpu_ms_per_clip_1_process": one["cpu_ms_per_clip"], "cpu_ms_per_clip_2_processes": two["cpu_ms_per_clip"],
                  "clips_per_s_2_free_cores": 2e3 / two["cpu_ms_per_clip"],
                  "load_average_before_after": [load_before, list(os.getloadavg())],
                  "note": "files read from the page cache (written just before); load_audio: soundfile read, "
                          "mono, soxr HQ to 16 kHz; clips_per_s_2_free_cores = 2 cores / the CPU time per clip"}
    print()
    print(f"load + resample 44.1 kHz -> 16 kHz, {corpus['clips']} one-second clips: "
          f"{corpus['clips_per_s_1_process']:.0f} clips/s on 1 process, {corpus['clips_per_s_2_processes']:.0f} on 2 "
          f"({two['cpu_ms_per_clip']:.3f} CPU ms per clip: {corpus['clips_per_s_2_free_cores']:.0f} clips/s on 2 free "
          f"cores); load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    path = write_json("resample", rows, {"batching": batch_rows, "corpus": corpus, "clip_seconds": 2.0,
                                         "threads": 1}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
