"""``ddfad data fetch fsdd --to DIR`` (download FSDD) and ``ddfad data info SOURCE`` (counts, skipped files;
``--strict``: an unusable file is an error, as in the other commands)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ParameterError

HELP = "fetch the FSDD recordings, or list what a data source holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "info"), help="fetch: download a dataset; info: summarise a source")
    parser.add_argument("target", help="fetch: the dataset name (fsdd); info: a folder or CSV manifest")
    parser.add_argument("--to", type=Path, help="fetch: folder to extract the recordings into")
    parser.add_argument("--cache", type=Path, default=None, help="info: feature cache folder")
    parser.add_argument("--max-per-class", type=int, default=None, help="info: at most N files per class and split")
    parser.add_argument("--strict", action="store_true",
                        help="info: an unusable audio file (unreadable, truncated, another sample rate) is an error")


def main(args: argparse.Namespace) -> int:
    from ..data import discover, fetch_fsdd, load_feature_split
    if args.action == "fetch":
        if args.target != "fsdd":
            raise ParameterError(f"unknown dataset {args.target!r}; available: fsdd")
        if args.to is None:
            raise ParameterError("ddfad data fetch needs --to DIR")
        files = fetch_fsdd(args.to)
        print(f"{len(files)} recordings in {args.to}")
        return 0
    items, skipped = discover(args.target)
    split = load_feature_split(args.target, cache_dir=args.cache, max_per_class=args.max_per_class,
                               strict=args.strict)
    print(f"{args.target}: {len(items)} labelled files, {split.num_classes} classes {split.class_names}")
    print(f"train {tuple(split.x_train.shape)}, test {tuple(split.x_test.shape)}")
    for path, reason in split.skipped:
        print(f"skipped {path}: {reason}")
    return 0
