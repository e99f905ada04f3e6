"""CPU benchmark of Griffin-Lim: our fast backends vs librosa.griffinlim per clip vs our reference.

Magnitudes are |STFT| of real FSDD clips (1 s, resampled for speech16k) for the FSDD preset (8 kHz,
n_fft 256, win 160, hop 80) and speech16k (16 kHz, n_fft 512, win 320, hop 128); B in {1, 16, 64};
32 iterations, momentum 0.99, float32, fixed random initial phases. Each row: median ms per batch
over >= 20 timed runs after warm-up, ms per iteration, clips/s and the ratio vs librosa, vs the
reference and vs torchaudio.

Each implementation runs after a short idle pause (so the thread pools of the one before have stopped
spinning). librosa is timed per clip (median of >= 20 calls, cycling through the clips) and scaled by
B: it processes clips one at a time, so its batch time is B times its clip time. torchaudio cannot be
installed beside our torch build here; our reference (``ddfad_fast.reference.griffin_lim``:
torch.stft / torch.istft, the ops torchaudio.transforms.GriffinLim runs) stands in for it, and a
torchaudio row is added when torchaudio imports.

Prints a table and writes bench/results/griffin_lim.json. Usage: python bench/griffin_lim.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest, print_table, torchaudio_griffin_lim, write_json  # noqa: E402
from features import fsdd_clips, time_each  # noqa: E402

from ddfad_fast import backends, reference  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402
from ddfad_fast.errors import BackendUnavailableError  # noqa: E402

N_ITER = 32
MOMENTUM = 0.99
FAST_BACKENDS = ("cpu", "numba")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats, B in {1, 16}: a smoke run")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row (default 20)")
    args = parser.parse_args()
    repeats = 3 if args.quick else max(20, args.repeats)
    batches = (1, 16) if args.quick else (1, 16, 64)
    rows: List[Dict[str, object]] = []
    load_before = os.getloadavg()
    import librosa
    for preset, cfg in (("fsdd8k", FeatureConfig.fsdd()), ("speech16k", FeatureConfig.speech16k())):
        length = cfg.fixed_length
        for batch in batches:
            waves = fsdd_clips(cfg, batch)
            mag = reference.stft(waves, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.window).abs().contiguous()
            gen = torch.Generator().manual_seed(0)
            turns = torch.rand(mag.shape, generator=gen)
            phase = torch.polar(torch.ones_like(turns), 2 * math.pi * turns)
            mag_np = mag.numpy()
            counter = iter(range(10 ** 9))

            def one_librosa_clip() -> None:
                i = next(counter) % batch
                librosa.griffinlim(mag_np[i], n_iter=N_ITER, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                   n_fft=cfg.n_fft, window=cfg.window, center=True, length=length,
                                   pad_mode="constant", momentum=MOMENTUM, random_state=0)

            fns: Dict[str, Callable[[], object]] = {"librosa": one_librosa_clip}
            for name in FAST_BACKENDS + ("reference",):
                try:
                    fn = backends.get("griffin_lim", mag, backend=name)[1]
                except BackendUnavailableError as exc:
                    print(f"skip {name}: {exc}", file=sys.stderr)
                    continue
                fns[name] = (lambda f: lambda: f(mag, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.window,
                                                  N_ITER, MOMENTUM, phase, length))(fn)
            transform = torchaudio_griffin_lim(cfg, N_ITER, MOMENTUM)
            if transform is not None:
                fns["torchaudio"] = lambda: transform(mag)
            timings = time_each(fns, repeats, warmup=2)
            # librosa runs one clip per call: its batch time is B times its clip time
            timings["librosa"] = {k: (v * batch if k.endswith("_s") else v) for k, v in timings["librosa"].items()}
            lib, ref = timings["librosa"]["median_s"], timings["reference"]["median_s"]
            ta = timings.get("torchaudio", {}).get("median_s")
            for name, t in timings.items():
                med = t["median_s"]
                rows.append({"op": "griffin_lim", "preset": preset, "B": batch, "impl": name, "ms": med * 1e3,
                             "ms_min": t["min_s"] * 1e3, "ms_per_iter": med * 1e3 / N_ITER, "clips_per_s": batch / med,
                             "x_librosa": lib / med, "x_reference": ref / med,
                             "x_torchaudio": (ta / med) if ta else None, "repeats": t["repeats"]})
            print(f"done {preset} B={batch}", file=sys.stderr, flush=True)
    print_table(rows, ["op", "preset", "B", "impl", "ms", "ms_per_iter", "clips_per_s", "x_librosa", "x_reference",
                       "x_torchaudio"])
    have_ta = any(r["impl"] == "torchaudio" for r in rows)
    if not have_ta:
        print("torchaudio: not importable beside this torch build; the reference row (torch.stft/istft, the ops "
              "torchaudio.transforms.GriffinLim uses) stands in for it")
    winners = fastest(rows, FAST_BACKENDS)
    print("fastest CPU backend:", winners)
    extra = {"load_avg_before": load_before, "load_avg_after": os.getloadavg(), "repeats": repeats,
             "threads": torch.get_num_threads(), "dtype": "float32", "n_iter": N_ITER,
             "momentum": MOMENTUM, "winners": winners,
             "notes": ("librosa: per-clip median x B. " + ("" if have_ta else
                       "torchaudio not importable here: the reference row (torch.stft/istft) stands in for it."))}
    print("wrote", write_json("griffin_lim", rows, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
