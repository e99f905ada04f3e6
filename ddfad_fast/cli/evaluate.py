"""``ddfad evaluate [DISTILLED.pt] --data DIR``: train fresh nets on a training set, report test accuracy.

Evaluates a distilled set (lr = its learned alpha, its soft labels when it has them), and/or a seeded
random real subset of N clips per class (``--random-cpc N``), and/or the full training split (``--full``),
for each architecture of ``--models``. Everything the set needs travels inside it: its feature config,
the standardisation of its feature space (the real data is standardised alike) and the model of its
experts (default architecture and width). Without a distilled set the standardisation is fitted on the
training split. The training protocol (epochs, augmentation) is the preset's, as in ``ddfad run``, and
so is the validation split carved from the training clips; accuracies are reported on the test split
(and the validation split).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ..config import FeatureConfig
from ..errors import ParameterError
from ..io import atomic_write_json, read_json
from .features import add_data_options, feature_config, features_in_memory
from .options import (add_source_options, add_tensorboard_options, add_training_options, check_tensorboard,
                      tensorboard_callbacks)

HELP = "evaluate a distilled set / random real subset / full data by training fresh networks"
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
    add_source_options(parser, cache_help="feature cache folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for eval.json and checkpoints (makes the evaluation resumable)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --out")
    parser.add_argument("--overwrite", action="store_true", help="start again in an --out that holds results")
    add_training_options(parser, ensemble_help="the nets of a set")
    add_data_options(parser)
    add_tensorboard_options(parser)


def check_distilled_fits(path: Path, distilled: dict, split) -> None:
    """ParameterError when a distilled set's classes or clip shape differ from those of ``--data``."""
    classes = int(distilled["config"]["num_classes"])
    shape = tuple(distilled["features"].shape[1:])
    if classes != split.num_classes or shape != tuple(split.in_shape):
        raise ParameterError(f"{path} holds {classes} classes of clips {shape}, but --data gives {split.num_classes} "
                             f"classes of {tuple(split.in_shape)}; evaluate it on the data it was distilled from")


def main(args: argparse.Namespace) -> int:
    from ..config import ModelConfig
    from ..data import FeatureNorm, load_feature_split
    from ..train.evaluate import evaluate_training_set, random_real_subset
    from ..io import load_artifact
    from ..presets import get_preset
    if args.distilled is None and args.random_cpc is None and not args.full:
        raise ParameterError("nothing to evaluate: give DISTILLED.pt, --random-cpc N or --full")
    check_tensorboard(args)
    preset = get_preset(args.preset)
    features, distilled, norm, model_config = preset.features, None, None, preset.expert.model
    if args.distilled is not None:
        distilled = load_artifact(args.distilled, kind="distilled")
        config = distilled["config"]
        features = FeatureConfig.from_dict(config["features"])
        if config.get("standardized"):
            norm = FeatureNorm.from_payload(distilled, str(args.distilled))
        if config.get("expert"):
            model_config = ModelConfig.from_dict(config["expert"]["model"])
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
            results = read_json(results_file, "evaluation results")
    if distilled is None:
        features = feature_config(args, features)
    elif args.feature_preset or args.duration:
        raise ParameterError("--feature-preset / --duration: a distilled set brings its own feature settings")
    from ..train.memory import training_reserve
    full = preset.eval_full
    reserve = training_reserve((model_config, full.batch_size, full.num_nets if (full.ensemble or args.ensemble) else 1))
    split = load_feature_split(args.data, features, cache_dir=args.cache, max_per_class=args.max_per_class,
                               strict=args.strict, val_fraction=preset.val_fraction, in_memory=features_in_memory(args),
                               workers=args.workers, max_memory_gb=args.max_memory, reserve=reserve,
                               standardize=norm if norm is not None else distilled is None)
    for path, reason in split.skipped:
        print(f"skipped {path}: {reason}")
    if distilled is not None:
        check_distilled_fits(args.distilled, distilled, split)
    split = split.to(args.device)
    models = tuple(args.models.split(",")) if args.models else preset.eval.models
    changes = {k: v for k, v in (("num_nets", args.num_nets), ("epochs", args.epochs)) if v is not None}
    if args.no_compile:
        changes["compile"] = False
    if args.ensemble:
        changes["ensemble"] = True
    if args.epochs is not None:
        changes["steps"] = None           # --epochs replaces the preset's SGD-step budget
    sets = []
    if distilled is not None:
        targets = distilled["soft_labels"] if "soft_labels" in distilled else distilled["labels"]
        sets.append(("distilled", distilled["features"].to(args.device), targets.to(args.device), float(torch.as_tensor(distilled["alpha"])),
                     preset.eval.replace(**changes)))
    if args.random_cpc is not None:
        xr, yr = random_real_subset(split.x_train, split.y_train, args.random_cpc, seed=preset.eval.seed)
        sets.append((f"random {args.random_cpc}/class", xr, yr, None, preset.eval.replace(**changes)))
    if args.full:
        sets.append(("full", split.x_train, split.y_train, None, preset.eval_full.replace(**changes)))
    callbacks = tensorboard_callbacks(args)
    for label, xs, ys, lr, config in sets:
        for name in models:
            key = f"{label} | {name}"
            r = results.get(key)
            if r is None:
                checkpoint = None
                if args.out is not None:
                    checkpoint = args.out / f"progress_{re.sub(r'[^A-Za-z0-9]+', '_', key).strip('_')}.pt"
                r = evaluate_training_set(xs, ys, split.x_test, split.y_test, model_config.replace(name=name), config,
                                          lr=lr, progress=True, checkpoint=checkpoint, x_val=split.x_val,
                                          y_val=split.y_val,
                                          callbacks=callbacks.scoped(re.sub(r'[^A-Za-z0-9]+', '_', label).strip('_')))
                results[key] = r
                if args.out is not None:
                    atomic_write_json(args.out / RESULTS_NAME, results)
            val = f", val {100 * r['val_mean']:.2f} %" if "val_mean" in r else ""
            print(f"{label:>20s}  {name:8s}  {100 * r['mean']:6.2f} +- {100 * r['std']:5.2f} % test{val}  "
                  f"(lr {r['lr']:.4g}, {config.num_nets} nets)")
    callbacks.close()
    return 0
