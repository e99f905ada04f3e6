"""Full-data training budget on a corpus's VALIDATION split: epochs against SGD steps.

Trains ``--nets`` ConvNets (width 32, the presets' augmentation) on every training clip under each
protocol named and prints one JSON line per protocol (validation accuracy, mean and std over nets, and
seconds); ``--log`` appends them to a JSON-lines file. The test split is not scored.

    python bench/full_protocol.py --data ../shared/data/emodb/split.csv --feature-preset speech16k \
        --duration 2 e20_b64 s760_b64 s1520_b64

A protocol is ``eN_bB`` (N epochs on batches of B) or ``sN_bB`` (N SGD steps on batches of B).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

from ddfad_fast.config import EvalConfig, FeatureConfig, ModelConfig  # noqa: E402
from ddfad_fast.data import load_feature_split  # noqa: E402
from ddfad_fast.presets import AUGMENT  # noqa: E402
from ddfad_fast.train.evaluate import evaluate_training_set  # noqa: E402


def protocol(name: str, nets: int) -> EvalConfig:
    match = re.fullmatch(r"([es])(\d+)_b(\d+)", name)
    if match is None:
        raise SystemExit(f"protocol {name!r}: expected eN_bB or sN_bB")
    kind, count, batch = match.group(1), int(match.group(2)), int(match.group(3))
    budget = {"epochs": count} if kind == "e" else {"steps": count}
    return EvalConfig(num_nets=nets, batch_size=batch, augment=AUGMENT, compile=False, **budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocols", nargs="+")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--feature-preset", choices=("fsdd", "speech16k"), default="fsdd")
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--nets", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("runs/full_protocol_cache"))
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features = getattr(FeatureConfig, args.feature_preset)()
    if args.duration is not None:
        features = features.replace(fixed_length=int(round(args.duration * features.sample_rate)))
    split = load_feature_split(args.data, features, cache_dir=args.cache, val_fraction=0.1, standardize=True,
                               progress=False)
    model = ModelConfig(width=32, depth=3)
    for name in args.protocols:
        t0 = time.perf_counter()
        r = evaluate_training_set(split.x_train, split.y_train, split.x_val, split.y_val, model,
                                  protocol(name, args.nets))
        row = {"protocol": name, "data": str(args.data), "num_train": len(split.y_train),
               "num_val": len(split.y_val), "val_mean_pct": round(100 * r["mean"], 1),
               "val_std_pct": round(100 * r["std"], 1), "nets": args.nets, "seconds": round(time.perf_counter() - t0),
               "machine": {k: v for k, v in machine_info().items()
                           if k in ("date", "git_commit", "cpu_count", "load_average_1_5_15", "torch")}}
        print(json.dumps(row), flush=True)
        if args.log is not None:
            with open(args.log, "a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
