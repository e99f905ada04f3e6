"""CPU benchmark of fd_mfcc: our public function vs librosa called once per clip vs torchaudio.

For the FSDD preset (8 kHz, n_fft 256, hop 80) and speech16k (16 kHz, n_fft 512, hop 128; FSDD clips
resampled with ddfad_fast.audio.resample) and B in {1, 64, 256} real FSDD clips (float32, 1 s):
median ms per batch over the timed runs (default 20) after warm-up (each implementation after a short
idle pause, so the thread pools of the one before have stopped spinning), clips/s, and the ratio vs
librosa, vs our reference and vs torchaudio.

Every implementation is timed through its public API, doing the same work from the same (B, L) batch:
ours is ``ddfad_fast.fd_mfcc(waves, sr, config, backend=NAME)`` (input checks, pad/crop and dispatch
included) for each backend that runs here: ``cpu`` (C++ extension), ``numba`` (forced-only, for the
record) and ``reference`` (plain torch); ``librosa_loop`` calls librosa once per clip in a Python loop
(preemphasis + stft + |.|^2 + melspectrogram + power_to_db + mfcc + delta + delta of order 2, the work of
one fd_mfcc row: librosa 0.11 shares one top_db floor across a batch, so a batched call would compute
something else); ``torchaudio`` is its MFCC + compute_deltas twice on the whole batch (a row only where
torchaudio imports beside this torch build).

Prints a table and writes features.json (git commit, machine, the backends that ran and whether the
extension loaded) to bench/results/ or --out. Usage: python bench/features.py [--quick] [--repeats N] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest, print_table, torchaudio_fd_mfcc, write_json  # noqa: E402

import ddfad_fast  # noqa: E402
from ddfad_fast.ops import dispatch  # noqa: E402
from ddfad_fast.audio import resample  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.errors import BackendUnavailableError  # noqa: E402

FSDD = Path(os.environ.get("DDFAD_FSDD_DIR",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"))
FAST_BACKENDS = ("cpu", "numba")


def fsdd_clips(cfg: FeatureConfig, batch: int, folder: Path = FSDD) -> torch.Tensor:
    """``batch`` FSDD clips (cycling through the folder), resampled to the preset's rate, padded /
    cropped to its fixed length: (batch, L) float32."""
    import soundfile
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD clips in {folder}")
    out = torch.zeros(batch, cfg.fixed_length)
    for i in range(batch):
        y, sr = soundfile.read(files[(i * 37) % len(files)], dtype="float32")
        clip = torch.from_numpy(y)
        if sr != cfg.sample_rate:
            clip = resample(clip, sr, cfg.sample_rate)
        n = min(clip.numel(), cfg.fixed_length)
        out[i, :n] = clip[:n]
    return out


def time_each(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 3,
              settle_s: float = 0.5) -> Dict[str, Dict[str, float]]:
    """Median / min / max wall seconds of each callable: ``warmup`` untimed calls, then ``repeats`` timed ones.

    The callables run one after the other, each after ``settle_s`` of idle time: thread pools of the
    previous one (OpenBLAS under numpy/librosa, MKL and OpenMP under torch) spin for a while after their
    last call and would otherwise steal the cores from the next one.
    """
    out = {}
    for name, fn in fns.items():
        time.sleep(settle_s)
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                     "repeats": repeats}
    return out


def librosa_fd_mfcc(waves: np.ndarray, cfg: FeatureConfig) -> List[np.ndarray]:
    """fd_mfcc the librosa way, one clip at a time: [(3, n_mfcc, T)] * B."""
    import librosa
    out = []
    for clip in waves:
        y = librosa.effects.preemphasis(clip, coef=cfg.preemphasis)
        spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                   window=cfg.window, center=True, pad_mode="constant")) ** 2
        mel = librosa.feature.melspectrogram(S=spec, sr=cfg.sample_rate, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                             fmax=cfg.fmax, norm="slaney")
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=cfg.ref, amin=cfg.amin, top_db=cfg.top_db),
                                    n_mfcc=cfg.n_mfcc)
        out.append(np.stack([mfcc, librosa.feature.delta(mfcc, width=cfg.delta_width, order=1),
                             librosa.feature.delta(mfcc, width=cfg.delta_width, order=2)]))
    return out


def bench_args(description: str, quick_batches: str) -> argparse.Namespace:
    """The options shared by the CPU benchmarks: --quick, --repeats, --out."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"3 repeats, B in {{{quick_batches}}}: a smoke run")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per row (default 20; 3 with --quick); fewer than 20 is a smoke run")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the JSON (default bench/results, or $DDFAD_BENCH_OUT)")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 20
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def ours(op: str, probe: torch.Tensor, names) -> List[str]:
    """Those of ``names`` that can run ``op`` on ``probe`` here (the others are reported and skipped)."""
    found = []
    for name in names:
        try:
            dispatch.get(op, probe, backend=name)
        except BackendUnavailableError as exc:
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        found.append(name)
    return found


def main() -> int:
    args = bench_args(__doc__, "1, 64")
    repeats = args.repeats
    batches = (1, 64) if args.quick else (1, 64, 256)
    rows: List[Dict[str, object]] = []
    load_before = os.getloadavg()
    for preset, cfg in (("fsdd8k", FeatureConfig.fsdd()), ("speech16k", FeatureConfig.speech16k())):
        for batch in batches:
            waves = fsdd_clips(cfg, batch)
            clips = waves.numpy()
            fns: Dict[str, Callable[[], object]] = {"librosa_loop": lambda: librosa_fd_mfcc(clips, cfg)}
            for name in ours("fd_mfcc", waves, FAST_BACKENDS + ("reference",)):
                fns[name] = (lambda b: lambda: ddfad_fast.fd_mfcc(waves, cfg.sample_rate, cfg, backend=b))(name)
            anchor = torchaudio_fd_mfcc(cfg)
            if anchor is not None:
                fns["torchaudio"] = lambda: anchor(waves)
            timings = time_each(fns, repeats)
            lib, ref = timings["librosa_loop"]["median_s"], timings["reference"]["median_s"]
            ta = timings.get("torchaudio", {}).get("median_s")
            for name, t in timings.items():
                med = t["median_s"]
                rows.append({"op": "fd_mfcc", "preset": preset, "B": batch, "impl": name, "ms": med * 1e3,
                             "ms_min": t["min_s"] * 1e3, "clips_per_s": batch / med, "x_librosa": lib / med,
                             "x_reference": ref / med, "x_torchaudio": (ta / med) if ta else None,
                             "repeats": t["repeats"]})
            print(f"done {preset} B={batch}", file=sys.stderr, flush=True)
    print_table(rows, ["op", "preset", "B", "impl", "ms", "clips_per_s", "x_librosa", "x_reference", "x_torchaudio"])
    winners = fastest(rows, FAST_BACKENDS)
    print("fastest CPU backend:", winners)
    extra = {"load_avg_before": load_before, "load_avg_after": os.getloadavg(), "repeats": repeats,
             "threads": torch.get_num_threads(), "dtype": "float32", "winners": winners,
             "impls": {"cpu / numba / reference": "ddfad_fast.fd_mfcc(waves, sr, config, backend=NAME): the public "
                                                  "function, input checks and dispatch included",
                       "librosa_loop": "librosa called once per clip in a Python loop over the batch (public "
                                       "functions: effects.preemphasis, stft, feature.melspectrogram, power_to_db, "
                                       "feature.mfcc, feature.delta x2)",
                       "torchaudio": "transforms.MFCC + functional.compute_deltas twice, one batched call"},
             "notes": ("input: real FSDD clips; each implementation timed after 0.5 s idle so other libraries' "
                       "spinning thread pools settle")}
    print("wrote", write_json("features", rows, extra, out_dir=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
