"""CPU benchmark of Griffin-Lim: our public function vs librosa.griffinlim called once per clip vs torchaudio.

Magnitudes are |STFT| of real FSDD clips (1 s, resampled for speech16k) for the FSDD preset (8 kHz,
n_fft 256, win 160, hop 80) and speech16k (16 kHz, n_fft 512, win 320, hop 128); B in {1, 16, 64};
32 iterations, momentum 0.99, float32, fixed random initial phases. Each row: median ms per batch
over the timed runs (default 20) after warm-up, ms per iteration, clips/s and the ratio vs librosa, vs
our reference and vs torchaudio. Each implementation runs after a short idle pause (so the thread pools
of the one before have stopped spinning).

Every implementation is timed through its public API on the same (B, F, T) magnitudes: ours is
``ddfad_fast.griffin_lim(mag, ..., init_phase=phase, backend=NAME)`` (input checks, scaling and dispatch
included) for ``cpu`` (C++ extension), ``numba`` and ``reference`` (torch.stft / torch.istft, the ops
torchaudio.transforms.GriffinLim runs); ``librosa_loop`` calls librosa.griffinlim once per clip in a
Python loop over the batch; ``torchaudio`` is torchaudio.functional.griffinlim on the whole batch (a row
only where torchaudio imports beside this torch build).

Prints a table and writes griffin_lim.json (git commit, machine, the backends that ran and whether the
extension loaded) to bench/results/ or --out. Usage: python bench/griffin_lim.py [--quick] [--repeats N] [--out DIR]
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fastest, print_table, torchaudio_griffin_lim, write_json  # noqa: E402
from features import bench_args, fsdd_clips, ours, time_each  # noqa: E402

import ddfad_fast  # noqa: E402
from ddfad_fast.ops import reference  # noqa: E402
from ddfad_fast.config import FeatureConfig  # noqa: E402

N_ITER = 32
MOMENTUM = 0.99
FAST_BACKENDS = ("cpu", "numba")


def main() -> int:
    args = bench_args(__doc__, "1, 16")
    repeats = args.repeats
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

            def librosa_loop() -> None:
                for clip in mag_np:
                    librosa.griffinlim(clip, n_iter=N_ITER, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                       n_fft=cfg.n_fft, window=cfg.window, center=True, length=length,
                                       pad_mode="constant", momentum=MOMENTUM, random_state=0)

            fns: Dict[str, Callable[[], object]] = {"librosa_loop": librosa_loop}
            for name in ours("griffin_lim", mag, FAST_BACKENDS + ("reference",)):
                fns[name] = (lambda b: lambda: ddfad_fast.griffin_lim(
                    mag, cfg.n_fft, cfg.hop_length, cfg.win_length, n_iter=N_ITER, momentum=MOMENTUM,
                    init_phase=phase, length=length, window=cfg.window, backend=b))(name)
            transform = torchaudio_griffin_lim(cfg, N_ITER, MOMENTUM)
            if transform is not None:
                fns["torchaudio"] = lambda: transform(mag)
            timings = time_each(fns, repeats, warmup=2)
            lib, ref = timings["librosa_loop"]["median_s"], timings["reference"]["median_s"]
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
             "impls": {"cpu / numba / reference": "ddfad_fast.griffin_lim(mag, ..., init_phase=phase, backend=NAME): "
                                                  "the public function, input checks and dispatch included",
                       "librosa_loop": "librosa.griffinlim called once per clip in a Python loop over the batch",
                       "torchaudio": "torchaudio.functional.griffinlim, one batched call"},
             "notes": "" if have_ta else
                      "torchaudio not importable here: the reference row (torch.stft/istft) stands in for it."}
    print("wrote", write_json("griffin_lim", rows, extra, out_dir=args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
