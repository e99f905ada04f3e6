"""``ddfad reconstruct FILE.pt --out DIR``: FD-MFCC back to audio, one WAV per sample.

FILE is a ``ddfad features`` file or a distilled set (``distilled.pt``: the standardisation it carries is
undone first, so the file reconstructs the same wherever it is moved). DIR receives the WAVs,
``manifest.csv`` (path,label) and
``reconstruction.json`` with the spectral convergence and log-spectral distance of every clip (of
the Griffin-Lim output against the magnitude it was asked to match) and their means.
"""
from __future__ import annotations

import argparse
from pathlib import Path


from ..config import ReconstructConfig
from ..errors import ParameterError
from ..outputs import MARKER, check_deletable, clear, mark
from ..apps.export import load_feature_set, write_audio_set

HELP = "turn FD-MFCC features or a distilled set back into WAV files (+ manifest and quality JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="features.pt or distilled.pt")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the WAVs")
    parser.add_argument("--n-iter", type=int, default=ReconstructConfig.n_iter, help="Griffin-Lim iterations")
    parser.add_argument("--nnls-iter", type=int, default=ReconstructConfig.nnls_iter, help="mel inversion iterations")
    parser.add_argument("--seed", type=int, default=ReconstructConfig.seed, help="seed of the random initial phases")
    parser.add_argument("--limit", type=int, default=None, help="reconstruct only the first N samples")
    parser.add_argument("--overwrite", action="store_true",
                        help="empty a folder of an earlier reconstruction first (never a folder ddfad did not make)")


def main(args: argparse.Namespace) -> int:
    if args.n_iter < 0 or args.nnls_iter < 0:
        raise ParameterError(f"--n-iter and --nnls-iter must be >= 0, got {args.n_iter}, {args.nnls_iter}")
    if not -2 ** 62 <= args.seed < 2 ** 62:
        raise ParameterError(f"--seed must be in [-2**62, 2**62), got {args.seed}")
    features, names, labels, config = load_feature_set(args.file)
    if args.limit is not None:
        if args.limit < 1:
            raise ParameterError(f"--limit must be >= 1, got {args.limit}")
        features, names, labels = features[:args.limit], names[:args.limit], labels[:args.limit]
    if len(names) == 0:
        raise ParameterError(f"{args.file} holds no samples")
    if args.out.exists() and any(args.out.glob("*.wav")):
        if not args.overwrite:
            raise ParameterError(f"{args.out} already holds WAV files; pass --overwrite or choose another --out")
        check_deletable(args.out, "reconstruct", inputs=[args.file], legacy=("reconstruction.json",))
        clear(args.out)
    if not (args.out.exists() and any(p.name != MARKER for p in args.out.iterdir())):
        mark(args.out, "reconstruct")             # a folder this command made: a later --overwrite may empty it
    reconstruct = ReconstructConfig(n_iter=args.n_iter, nnls_iter=args.nnls_iter, seed=args.seed)
    summary = write_audio_set(features, names, labels, config, args.out, reconstruct, progress=True)
    print(f"wrote {len(names)} WAVs to {args.out}; mean spectral convergence "
          f"{summary['mean_spectral_convergence_db']:.2f} dB, mean log-spectral distance "
          f"{summary['mean_log_spectral_distance_db']:.2f} dB")
    return 0
