"""``ddfad evaluate [DISTILLED.pt] --data DIR``: train fresh nets on a training set, report test accuracy.

Evaluates a distilled set (lr = its learned alpha), and/or a seeded random real subset of N clips per
class (``--random-cpc N``), and/or the full training split (``--full``), for each architecture of
``--models``. A ``feature_stats.pt`` beside the distilled file (or one folder up, as ``ddfad run``
writes it) means the set lives in standardised feature space: the real data is standardised alike.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Optional

import torch

from ..config import FeatureConfig
from ..errors import ParameterError
from ..io import atomic_write_json

HELP = "evaluate a distilled set / random real subset / full data by training fresh networks"
STATS_NAME = "feature_stats.pt"
RESULTS_NAME = "eval.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("distilled", nargs="?", type=Path, help="distilled.pt (optional with --random-cpc/--full)")
    parser.add_argument("--data", required=True, help="FSDD-named folder, class sub-folders, or CSV manifest")
    parser.add_argument("--preset", default="cpu-small", help="evaluation settings preset (default cpu-small)")
    parser.add_argument("--models", default=None, help="comma-separated: convnet,vgg,resnet")
    parser.add_argument("--num-nets", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--random-cpc", type=int, default=None, help="also evaluate N random real clips per class")
    parser.add_argument("--full", action="store_true", help="also evaluate the full training split")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for eval.json and checkpoints (makes the evaluation resumable)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --out")
    parser.add_argument("--overwrite", action="store_true", help="start again in an --out that holds results")
    parser.add_argument("--strict", action="store_true", help="an unreadable audio file is an error, not a skip")


def find_stats(distilled: Path) -> Optional[Path]:
    """The feature_stats.pt that goes with a distilled file, if any."""
    for folder in (distilled.parent, distilled.parent.parent):
        if (folder / STATS_NAME).is_file():
            return folder / STATS_NAME
    return None


def main(args: argparse.Namespace) -> int:
    from ..data import load_feature_split, load_feature_stats, standardize
    from ..evaluate import evaluate_training_set, random_real_subset
    from ..io import load_artifact
    from ..presets import get_preset
    if args.distilled is None and args.random_cpc is None and not args.full:
        raise ParameterError("nothing to evaluate: give DISTILLED.pt, --random-cpc N or --full")
    preset = get_preset(args.preset)
    features, distilled, stats = preset.features, None, None
    if args.distilled is not None:
        distilled = load_artifact(args.distilled, kind="distilled")
        features = FeatureConfig.from_dict(distilled["config"]["features"])
        stats_path = find_stats(args.distilled)
        if stats_path is not None:
            stats = load_feature_stats(stats_path, features)
    results: dict = {}
    if args.out is not None:
        results_file = args.out / RESULTS_NAME
        if results_file.is_file() and not (args.resume or args.overwrite):
            raise ParameterError(f"{results_file} exists; pass --resume to continue or --overwrite to start again")
        if args.resume and args.overwrite:
            raise ParameterError("--resume and --overwrite exclude each other")
        if args.overwrite:
            for old in [results_file, *args.out.glob("progress_*.pt")]:
                old.unlink(missing_ok=True)
        if results_file.is_file():
            results = json.loads(results_file.read_text())
    split = load_feature_split(args.data, features, cache_dir=args.cache, max_per_class=args.max_per_class,
                               strict=args.strict)
    for path, reason in split.skipped:
        print(f"skipped {path}: {reason}")
    x_train, x_test = split.x_train, split.x_test
    if stats is not None:
        x_train, x_test = standardize(x_train, *stats), standardize(x_test, *stats)
    models = tuple(args.models.split(",")) if args.models else preset.eval.models
    changes = {k: v for k, v in (("num_nets", args.num_nets), ("epochs", args.epochs)) if v is not None}
    sets = []
    if distilled is not None:
        sets.append(("distilled", distilled["features"], distilled["labels"], float(torch.as_tensor(distilled["alpha"])),
                     preset.eval.replace(**changes)))
    if args.random_cpc is not None:
        xr, yr = random_real_subset(x_train, split.y_train, args.random_cpc, seed=preset.eval.seed)
        sets.append((f"random {args.random_cpc}/class", xr, yr, None, preset.eval.replace(**changes)))
    if args.full:
        sets.append(("full", x_train, split.y_train, None, preset.eval_full.replace(**changes)))
    model_config = preset.expert.model
    for label, xs, ys, lr, config in sets:
        for name in models:
            key = f"{label} | {name}"
            r = results.get(key)
            if r is None:
                checkpoint = None
                if args.out is not None:
                    checkpoint = args.out / f"progress_{re.sub(r'[^A-Za-z0-9]+', '_', key).strip('_')}.pt"
                r = evaluate_training_set(xs, ys, x_test, split.y_test, model_config.replace(name=name), config,
                                          lr=lr, progress=True, checkpoint=checkpoint)
                results[key] = r
                if args.out is not None:
                    atomic_write_json(args.out / RESULTS_NAME, results)
            print(f"{label:>20s}  {name:8s}  {100 * r['mean']:6.2f} +- {100 * r['std']:5.2f} %  (lr {r['lr']:.4g}, "
                  f"{config.num_nets} nets)")
    return 0
