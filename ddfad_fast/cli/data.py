"""``ddfad data fetch fsdd --to DIR`` (download FSDD) and ``ddfad data info SOURCE`` (the feature settings that
fit the clips, from a header scan; clips per class and split, class imbalance, skipped files with their reasons;
``--strict``: an unusable file is an error, as in the other commands). SOURCE may also be a Hugging Face
dataset saved with ``save_to_disk`` or ``hf:NAME[:CONFIG]`` from the local cache (written as clips into
``--cache``, or a temporary folder)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ParameterError
from .features import add_data_options, feature_choice
from .options import add_source_options

HELP = "fetch the FSDD recordings, or list what a data source holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch", "info"), help="fetch: download a dataset; info: summarise a source")
    parser.add_argument("target", help="fetch: the dataset name (fsdd); info: a folder, CSV manifest, saved Hugging "
                        "Face dataset or hf:NAME")
    parser.add_argument("--to", type=Path, help="fetch: folder to extract the recordings into")
    add_source_options(parser, cache_help="feature cache folder", prefix="info: ")
    add_data_options(parser, inferred=True)


def main(args: argparse.Namespace) -> int:
    from ..data import discover, fetch_fsdd, load_feature_split
    if args.action == "fetch":
        if args.target != "fsdd":
            raise ParameterError(f"unknown dataset {args.target!r}; available: fsdd")
        if args.to is None:
            raise ParameterError("ddfad data fetch needs --to DIR")
        check_writable(args.to)                   # before the download, not after it
        files = fetch_fsdd(args.to)
        print(f"{len(files)} recordings in {args.to}")
        return 0
    import tempfile
    from ..apps.api import resolve_source
    with tempfile.TemporaryDirectory() as tmp:
        source = resolve_source(args.target, args.cache or tmp)
        config = feature_choice(args, source=source).config
        items, skipped = discover(source)
        split = load_feature_split(source, config, cache_dir=args.cache, max_per_class=args.max_per_class,
                                   strict=args.strict, in_memory=False, workers=args.workers)
        return _summarise(args.target, items, split)


def _summarise(target, items, split) -> int:
    print(f"{target}: {len(items)} labelled files, {split.num_classes} classes")
    print(f"train {tuple(split.x_train.shape)}, test {tuple(split.x_test.shape)}")
    print(class_table(split.class_names, split.y_train, split.y_test))
    reasons: dict = {}
    for path, reason in split.skipped:
        print(f"skipped {path}: {reason}")
        kind = reason.split(" (")[0]                  # the reason without the decoder's message naming the file
        reasons[kind] = reasons.get(kind, 0) + 1
    if split.skipped:
        print(f"{len(split.skipped)} file(s) skipped: " + "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items())))
    return 0


def check_writable(folder: Path) -> None:
    """OutputError (one line naming ``folder``) when files cannot be created in it."""
    import tempfile

    from ..outputs import output_error
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise output_error(exc, folder) from None


def class_table(names, y_train, y_test) -> str:
    """Clips per class in each split, and the class imbalance of the training split (largest / smallest)."""
    import torch
    train = torch.bincount(y_train, minlength=len(names)).tolist()
    test = torch.bincount(y_test, minlength=len(names)).tolist()
    width = max(5, max(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'train':>7}  {'test':>6}"]
    lines += [f"{n:<{width}}  {a:>7}  {b:>6}" for n, a, b in zip(names, train, test)]
    smallest, largest = min(train), max(train)
    ratio = largest / smallest if smallest else float("inf")
    lines.append(f"class imbalance (training clips, largest / smallest class): {largest} / {smallest} = {ratio:.2f}"
                 + ("  (imbalanced: distilled sets keep the same clips per class; accuracy is reported over all test clips)"
                    if ratio >= 1.5 else ""))
    return "\n".join(lines)
