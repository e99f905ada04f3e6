"""``ddfad features IN_DIR_OR_FILES... --out features.pt``: FD-MFCC of audio files into one file.

Folders are searched recursively for audio files (.wav .flac .ogg .aiff .aif); files named directly
are always tried. Unusable files are skipped and listed (``--strict``: the first one is an error).
Work is checkpointed every ``--checkpoint-every`` files (one atomic file per chunk in ``OUT.parts/``);
``--resume`` continues after the last finished chunk. The output holds ``features`` (N, 3, n_mfcc, T) float32, ``paths`` (N,), and
``skipped`` [[file, reason], ...], with the FeatureConfig.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path
from typing import List

import torch

from ..config import FeatureConfig
from ..errors import DDFADError, ParameterError
from ..io import load_artifact, save_artifact
from . import DeprecatedAlias

HELP = "compute FD-MFCC features of audio files or folders into one .pt file"
PRESETS = {"fsdd": FeatureConfig.fsdd, "speech16k": FeatureConfig.speech16k}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output file, e.g. features.pt")
    parser.add_argument("--feature-preset", default="fsdd", choices=sorted(PRESETS),
                        help="FeatureConfig preset (default fsdd)")
    parser.add_argument("--preset", dest="feature_preset", choices=sorted(PRESETS), action=DeprecatedAlias,
                        new="--feature-preset")
    parser.add_argument("--length", type=float, default=None, help="fixed clip length in seconds (pad/crop)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file instead of skipping it")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (OUT.parts/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--checkpoint-every", type=int, default=2048, help="files per checkpoint (default 2048)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def collect_files(inputs: List[Path]) -> List[Path]:
    """Audio files named or found (recursively, sorted) in ``inputs``; a missing input is an error."""
    from ..data import AUDIO_EXTENSIONS
    files: List[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif item.exists():
            files.append(item)
        else:
            raise ParameterError(f"{item}: no such file or folder")
    if not files:
        raise ParameterError(f"no audio files found in {', '.join(map(str, inputs))}")
    return files


def _file_list_key(files: List[Path]) -> str:
    return hashlib.sha256("\n".join(str(f.resolve()) for f in files).encode()).hexdigest()


def parts_dir(out: Path) -> Path:
    """Folder of the finished chunks of an unfinished run (one file per ``--checkpoint-every`` files)."""
    return out.with_name(out.name + ".parts")


def main(args: argparse.Namespace) -> int:
    from ..data import extract_features

    config = PRESETS[args.feature_preset]()
    if args.length is not None:
        if args.length <= 0:
            raise ParameterError(f"--length must be > 0 seconds, got {args.length}")
        config = config.replace(fixed_length=int(round(args.length * config.sample_rate)))
    config.validate()
    if args.checkpoint_every < 1:
        raise ParameterError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.out.exists() and not args.overwrite:
        raise ParameterError(f"{args.out} exists; pass --overwrite to replace it")
    files = collect_files(args.inputs)
    run_config = {"features": config.to_dict(), "files": _file_list_key(files), "chunk": args.checkpoint_every}
    parts = parts_dir(args.out)
    finished = sorted(parts.glob("chunk_*.pt")) if parts.is_dir() else []
    if finished and not args.resume:
        raise ParameterError(f"{parts} holds an unfinished run; pass --resume to continue it (or delete it)")
    chunks, paths, skipped = [], [], []
    for part in finished:
        state = load_artifact(part, kind="features_chunk", expected_config=run_config)
        chunks.append(state["features"])
        paths += list(state["paths"])
        skipped += [tuple(s) for s in state["skipped"]]
    done = len(finished) * args.checkpoint_every
    if finished:
        print(f"resuming after {done} of {len(files)} files")
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(files), initial=done, desc="features", unit="clip")
    for start in range(done, len(files), args.checkpoint_every):
        batch = files[start:start + args.checkpoint_every]
        x, kept, bad = extract_features(batch, config, strict=args.strict, progress=bar if bar is not None else False)
        chunk_paths = [str(batch[i]) for i in kept]
        save_artifact(parts / f"chunk_{start // args.checkpoint_every:06d}.pt", "features_chunk",
                      {"features": x, "paths": chunk_paths, "skipped": [list(s) for s in bad]}, config=run_config)
        chunks.append(x)
        paths += chunk_paths
        skipped += bad
        if bar is not None:
            bar.set_postfix(read=len(paths), skipped=len(skipped))
    if bar is not None:
        bar.close()
    features = torch.cat(chunks) if chunks else torch.zeros(0, 3, config.n_mfcc, config.n_frames(config.fixed_length))
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    if not paths:
        raise DDFADError(f"none of the {len(files)} files could be read")
    save_artifact(args.out, "features", {"features": features, "paths": paths, "skipped": [list(s) for s in skipped]},
                  config={"features": config.to_dict()})
    shutil.rmtree(parts, ignore_errors=True)
    print(f"read {len(paths)} of {len(files)} files ({len(skipped)} skipped); "
          f"wrote features {tuple(features.shape)} to {args.out}")
    return 0

