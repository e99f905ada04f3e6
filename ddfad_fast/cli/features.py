"""``ddfad features``: FD-MFCC of audio files into a sharded feature store, or into one file.

Inputs: audio files and folders (searched recursively for .wav .flac .ogg .aiff .aif; files named directly
are always tried), or ``--data SOURCE``: a labelled source as the other commands read it (FSDD names,
class sub-folders or a CSV manifest), whose labels and splits the store then records.

Outputs (one of):

* ``--store DIR``: a sharded, memory-mapped store (:mod:`ddfad_fast.data.store`): shards of ``--shard-size``
  clips written atomically as they finish (``--resume`` keeps them), ``index.json`` last.
* ``--cache DIR`` (with ``--data``): the store the other commands look for in their feature cache, e.g.
  ``ddfad features --data D --cache runs/R/cache`` before ``ddfad run --data D --out runs/R``.
* ``--out FILE.pt``: one file holding ``features`` (N, 3, n_mfcc, T) float32, ``paths`` (N,) and
  ``skipped`` [[file, reason], ...] with the FeatureConfig; built through a store in ``FILE.pt.parts/``
  (shards of ``--checkpoint-every`` files), removed when the file is written.

``--data`` may also be a Hugging Face dataset saved with ``save_to_disk`` or ``hf:NAME[:CONFIG]`` from the local
cache: its clips are written once into ``--cache`` (or beside ``--store`` / ``--out``) as a folder with a
manifest (:mod:`ddfad_fast.data.spool`). Without ``--feature-preset`` / ``--duration`` the features are chosen
from a header scan of the clips (:mod:`ddfad_fast.data.scan`); the choice is printed.

Unusable files are skipped and listed with their reason (``--strict``: the first one is an error).
Decoding runs in ``--workers`` DataLoader processes. Under ``torchrun --nproc-per-node K -m
ddfad_fast.cli features ...`` the K ranks compute disjoint shards and rank 0 writes the index: the store
is byte-identical to one written by one process.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import List

from ..config import FeatureConfig
from ..errors import DDFADError, ParameterError
from ..io import save_artifact
from ..data.scan import FEATURE_PRESETS, with_duration
from ..outputs import check_deletable, clear, hold
from .options import DeprecatedAlias

HELP = "compute FD-MFCC features of audio files into a sharded store (or one .pt file)"
PRESETS = FEATURE_PRESETS


def add_feature_options(parser: argparse.ArgumentParser, inferred: bool = False) -> None:
    """``--feature-preset`` and ``--duration``, shared by the commands that compute features (``inferred``:
    what they leave out is chosen from a header scan of the data, else the FSDD preset's)."""
    default = "inferred from the data's sample rates" if inferred else "fsdd"
    parser.add_argument("--feature-preset", default=None, choices=sorted(PRESETS),
                        help=f"FeatureConfig preset: fsdd (8 kHz) or speech16k (16 kHz) (default: {default})")
    default = "the 90th percentile of the clip lengths in whole seconds, 1-4 s" if inferred else "1"
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help=f"clip length in seconds: every clip is padded / cropped to it (default: {default})")


def add_data_options(parser: argparse.ArgumentParser, inferred: bool = False) -> None:
    """The feature options of the commands that read a labelled source: ``--feature-preset``,
    ``--duration``, ``--workers`` and ``--features-in``."""
    add_feature_options(parser, inferred)
    parser.add_argument("--workers", type=int, default=None,
                        help="feature decoding processes (default: one per spare core, at most 4)")
    parser.add_argument("--features-in", choices=("auto", "memory", "store"), default="auto",
                        help="where training reads the features: memory, their memory-mapped store on disk (batch by "
                             "batch), or auto: memory when they fit (--max-memory, else up to 2 GB)")


def features_in_memory(args: argparse.Namespace):
    """``--features-in`` as load_feature_split's ``in_memory``: True, False, or None (decide)."""
    return {"auto": None, "memory": True, "store": False}[getattr(args, "features_in", "auto")]


def feature_config(args: argparse.Namespace, base: FeatureConfig) -> FeatureConfig:
    """``base`` (a preset's FeatureConfig) with ``--feature-preset`` and ``--duration`` applied."""
    config = PRESETS[args.feature_preset]() if getattr(args, "feature_preset", None) else base
    duration = getattr(args, "duration", None)
    if duration is not None:
        config = with_duration(config, duration)
    check_workers(args)
    return config.validate()


def check_workers(args: argparse.Namespace) -> None:
    if getattr(args, "workers", None) is not None and args.workers < 0:
        raise ParameterError(f"--workers must be >= 0 (0: decode in this process), got {args.workers}")


def feature_choice(args: argparse.Namespace, source=None, files=None, show: bool = True):
    """The :class:`~ddfad_fast.data.scan.FeatureChoice` of ``--feature-preset`` / ``--duration``, what they leave
    out chosen from a header scan of ``source`` (a folder or CSV manifest) or ``files``; printed (the line on
    stdout, each warning as one ``warning:`` line on stderr)."""
    from ..apps.api import print_choice
    from ..data.scan import choose_features, scan_clips, scan_source
    check_workers(args)
    preset, duration = getattr(args, "feature_preset", None), getattr(args, "duration", None)
    scan = scan_source(source) if source is not None else scan_clips(files)
    choice = choose_features(scan, preset=preset, duration=duration)
    if show:
        print_choice(choice)
    return choice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", type=Path, help="audio files and/or folders (searched recursively)")
    parser.add_argument("--data", default=None, help="a labelled source instead: FSDD-named folder, class "
                        "sub-folders, or CSV manifest")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--store", type=Path, help="write a sharded feature store into this folder")
    out.add_argument("--cache", type=Path, help="with --data: the feature cache folder of the other commands")
    out.add_argument("--out", type=Path, help="write one file, e.g. features.pt")
    add_feature_options(parser, inferred=True)
    parser.add_argument("--preset", dest="feature_preset", choices=sorted(PRESETS), action=DeprecatedAlias,
                        new="--feature-preset")
    parser.add_argument("--length", dest="duration", type=float, action=DeprecatedAlias, new="--duration")
    parser.add_argument("--max-per-class", type=int, default=None, help="with --data: at most N files per class and split")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: one per spare core, at most 4; 0: decode in this process)")
    parser.add_argument("--shard-size", type=int, default=None, help="clips per shard of a store (default 4096)")
    parser.add_argument("--max-memory", type=float, default=None, metavar="GB",
                        help="memory limit: shard size, batch and workers are chosen to fit, or the command refuses")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file instead of skipping it")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (keeps finished shards)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output (only a store or file ddfad made, never an input)")
    parser.add_argument("--checkpoint-every", type=int, default=2048, help="--out: files per checkpoint (default 2048)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def collect_files(inputs: List[Path]) -> List[Path]:
    """Audio files named or found (recursively, sorted) in ``inputs``; a missing input is an error."""
    from ..data import AUDIO_EXTENSIONS
    files: List[Path] = []
    for item in inputs:
        if item.is_dir():
            # every entry with an audio suffix but folders: a broken link, a link loop or a FIFO is listed as
            # skipped with its reason (it is never opened), not dropped in silence
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not p.is_dir())
        elif item.exists() or item.is_symlink():
            files.append(item)
        else:
            raise ParameterError(f"{item}: no such file or folder")
    if not files:
        raise ParameterError(f"no audio files found in {', '.join(map(str, inputs))}")
    return files


def check_replaceable(path: Path, inputs) -> None:
    """``--out FILE --overwrite``: FILE may be replaced when it is a file ddfad wrote (a torch zip archive),
    never a folder or an input of the command."""
    import zipfile

    from ..outputs import within
    if path.is_dir():
        raise ParameterError(f"--out {path} is a folder; --out names the file to write (e.g. features.pt)")
    if any(within(item, path) for item in inputs):
        raise ParameterError(f"--overwrite would replace {path}, an input of this command; refusing")
    if not zipfile.is_zipfile(path):
        raise ParameterError(f"{path} is not a file ddfad wrote; --overwrite refuses to replace it")


def parts_dir(out: Path) -> Path:
    """Folder of the finished shards of an unfinished ``--out`` run (one per ``--checkpoint-every`` files)."""
    return out.with_name(out.name + ".parts")


def main(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..data import Item, labelled_items
    from ..data.store import DEFAULT_SHARD_SIZE, INDEX_NAME, FeatureStore, index_key, build_store, store_key
    from ..resources import plan_features

    if bool(args.inputs) == bool(args.data):
        raise ParameterError("give either audio files / folders or --data SOURCE")
    if args.cache is not None and args.data is None:
        raise ParameterError("--cache needs --data (the cache of a labelled source)")
    if args.checkpoint_every < 1 or (args.shard_size is not None and args.shard_size < 1):
        raise ParameterError("--checkpoint-every and --shard-size must be >= 1")
    if args.out is not None and distributed.world_size() > 1:
        raise ParameterError("under torchrun, write a store (--store or --cache); --out is one process's file")
    if args.data is not None:
        from ..apps.api import resolve_source
        spool = args.cache or (args.store or args.out).parent
        source = resolve_source(args.data, spool, progress=not args.quiet)
        config = feature_choice(args, source=source, show=distributed.is_main()).config
        items, skipped = labelled_items(source, config, args.max_per_class)
    else:
        files = collect_files(args.inputs)
        config = feature_choice(args, files=files, show=distributed.is_main()).config
        items, skipped = [Item(f, None, None) for f in files], []
    shard_size = args.checkpoint_every if args.out is not None else (args.shard_size or DEFAULT_SHARD_SIZE)
    shard_size, batch_size, workers = plan_features(config, args.max_memory, args.workers, shard_size)
    if args.out is not None:
        folder, final = parts_dir(args.out), args.out
    key = store_key(items, config, args.strict)
    if args.cache is not None:
        folder = final = args.cache / f"store_{key[:20]}"
    elif args.out is None:
        folder = final = args.store
    if args.out is not None and final.exists() and not args.overwrite:
        raise ParameterError(f"{final} exists; pass --overwrite to replace it")
    if args.out is None and (final / INDEX_NAME).is_file() and not args.overwrite:
        if index_key(final / INDEX_NAME) != key:
            raise ParameterError(f"{final} holds a store of other files or settings; pass --overwrite to replace it")
        if distributed.is_main():
            print(f"{final}: the store is complete and up to date ({len(FeatureStore(final, key))} clips)")
        return 0
    if args.overwrite and final.exists() and distributed.is_main():
        inputs = list(args.inputs) + ([args.data] if args.data else []) + [it.path for it in items]
        if args.out is not None:                  # the file is replaced atomically once the new one is written
            check_replaceable(final, inputs)
        else:
            check_deletable(final, "store", inputs, legacy=lambda f: index_key(f / INDEX_NAME) is not None
                            or any(f.glob("shard_*.json")))
            with hold(final, "feature store folder"):      # --cache: no other process may be building it
                clear(final)
    distributed.barrier()
    started = folder.is_dir() and any(folder.glob("shard_*.json"))
    if started and not args.resume:
        raise ParameterError(f"{folder} holds an unfinished run; pass --resume to continue it (or delete it)")
    if started and distributed.is_main():
        print(f"resuming: {len(list(folder.glob('shard_*.json')))} finished shard(s) in {folder}")
    store = build_store(items, config, folder, strict=args.strict, shard_size=shard_size, workers=workers,
                        batch_size=batch_size, progress=not args.quiet, key=key)
    skipped = list(skipped) + list(store.skipped)
    if not distributed.is_main():
        return 0
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    if len(store) == 0:
        raise DDFADError(f"none of the {len(items)} files could be read")
    if args.out is not None:
        save_artifact(args.out, "features", {"features": store.features().materialize(),
                                             "paths": store.column("path"), "skipped": [list(s) for s in skipped]},
                      config={"features": config.to_dict()})
        shutil.rmtree(folder, ignore_errors=True)
    print(f"read {len(store)} of {len(items)} files ({len(skipped)} skipped); wrote features "
          f"({len(store)}, {', '.join(map(str, store.clip_shape))}) to {final}")
    return 0
