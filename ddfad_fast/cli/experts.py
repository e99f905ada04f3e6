"""``ddfad experts --data DIR --out DIR``: train the expert trajectories of MTT.

The training clips (less the preset's validation split) are standardised per channel and coefficient;
the standardisation is stored in every trajectory file, and ``ddfad distill`` takes it from there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .features import add_data_options, feature_config, features_in_memory
from .options import (add_source_options, add_tensorboard_options, add_training_options, check_tensorboard,
                      tensorboard_callbacks)

HELP = "train expert (teacher) trajectories on a data source"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="FSDD-named folder, class sub-folders, or CSV manifest")
    parser.add_argument("--out", required=True, type=Path, help="folder for expert_KKK.pt files")
    parser.add_argument("--preset", default="cpu-small", help="configuration preset (default cpu-small)")
    parser.add_argument("--num-experts", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--min-epoch-steps", type=int, default=None,
                        help="SGD steps an epoch (snapshot) takes at least: several passes over a small training set "
                             "(0: one pass; default: the preset's)")
    parser.add_argument("--width", type=int, default=None, help="ConvNet width")
    parser.add_argument("--resume", action="store_true", help="keep finished experts, continue an unfinished one")
    add_source_options(parser, cache_help="feature cache folder (default OUT/cache)")
    add_training_options(parser, ensemble_help="the experts")
    add_data_options(parser)
    add_tensorboard_options(parser)


def main(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..data import load_feature_split
    from ..train.experts import train_experts
    from ..presets import get_preset
    preset = get_preset(args.preset)
    expert = preset.expert
    if args.num_experts is not None:
        expert = expert.replace(num_experts=args.num_experts)
    if args.epochs is not None:
        expert = expert.replace(epochs=args.epochs)
    if args.min_epoch_steps is not None:
        expert = expert.replace(min_epoch_steps=args.min_epoch_steps or None)
    if args.width is not None:
        expert = expert.replace(model=expert.model.replace(width=args.width))
    if args.no_compile:
        expert = expert.replace(compile=False)
    if args.ensemble:
        expert = expert.replace(ensemble=True)
    from ..train.memory import training_reserve
    check_tensorboard(args)                   # before the data is read: a missing tensorboard is said first
    reserve = training_reserve((expert.model, expert.batch_size, expert.num_experts if expert.ensemble else 1))
    split = load_feature_split(args.data, feature_config(args, preset.features),
                               cache_dir=args.cache or args.out / "cache", max_per_class=args.max_per_class,
                               strict=args.strict, val_fraction=preset.val_fraction, in_memory=features_in_memory(args),
                               workers=args.workers, max_memory_gb=args.max_memory, reserve=reserve,
                               standardize=preset.standardize)
    main_rank = distributed.is_main()                 # under torchrun rank 0 alone prints
    if main_rank:
        for path, reason in split.skipped:
            print(f"skipped {path}: {reason}")
    callbacks = tensorboard_callbacks(args)
    try:
        paths = train_experts(split.to(args.device), expert, args.out, resume=args.resume, callbacks=callbacks)
    finally:
        callbacks.close()
    if main_rank:
        print(f"{len(paths)} expert trajectories in {args.out}" +
              (f" ({distributed.world_size()} processes)" if distributed.world_size() > 1 else ""))
    return 0
