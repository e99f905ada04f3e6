"""``ddfad reconstruct FILE.pt --out DIR``: FD-MFCC back to audio, one WAV per sample.

FILE is a ``ddfad features`` file or a distilled set (``distilled.pt``: the standardisation it carries is
undone first, so the file reconstructs the same wherever it is moved). DIR receives the WAVs,
``manifest.csv`` (path,label) and
``reconstruction.json`` with the spectral convergence and log-spectral distance of every clip (of
the Griffin-Lim output against the magnitude it was asked to match) and their means.
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..config import FeatureConfig, ReconstructConfig
from ..errors import DDFADError, FileFormatError, ParameterError
from ..io import atomic_write_json, atomic_write_text, load_artifact

HELP = "turn FD-MFCC features or a distilled set back into WAV files (+ manifest and quality JSON)"
PEAK = 0.99       # clips louder than this are scaled down to it before writing 16-bit PCM
BATCH = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="features.pt or distilled.pt")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the WAVs")
    parser.add_argument("--n-iter", type=int, default=ReconstructConfig.n_iter, help="Griffin-Lim iterations")
    parser.add_argument("--nnls-iter", type=int, default=ReconstructConfig.nnls_iter, help="mel inversion iterations")
    parser.add_argument("--seed", type=int, default=ReconstructConfig.seed, help="seed of the random initial phases")
    parser.add_argument("--limit", type=int, default=None, help="reconstruct only the first N samples")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that already holds WAVs")


def write_audio_set(features: torch.Tensor, names: Sequence[str], labels: Sequence[str], config: FeatureConfig,
                    out_dir: Path, reconstruct: Optional[ReconstructConfig] = None, progress: bool = False) -> dict:
    """Reconstruct ``features`` (N, 3, n_mfcc, T) in raw FD-MFCC units to ``out_dir/NAME.wav``.

    Also writes ``manifest.csv`` (path,label) and ``reconstruction.json``; returns that JSON's dict.
    """
    from .. import fd_mfcc_to_audio, save_audio, spectral_convergence, log_spectral_distance
    from ..reference import preemphasis

    reconstruct = reconstruct or ReconstructConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(reconstruct.seed)
    clips: List[Dict[str, object]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(names), desc="reconstruct", unit="clip")
    for start in range(0, len(names), BATCH):
        wave, magnitude = fd_mfcc_to_audio(features[start:start + BATCH].float(), config.sample_rate, config,
                                           n_iter=reconstruct.n_iter, reconstruct=reconstruct, generator=generator,
                                           return_magnitude=True)
        emphasised = preemphasis(wave, config.preemphasis) if reconstruct.deemphasis else wave
        args = (config.n_fft, config.hop_length, config.win_length, config.window)
        sc = spectral_convergence(magnitude, emphasised, *args).tolist()
        lsd = log_spectral_distance(magnitude, emphasised, *args).tolist()
        for k, clip in enumerate(wave):
            name = names[start + k]
            if not bool(torch.isfinite(clip).all()):
                raise DDFADError(f"reconstruction of {name} has non-finite samples")
            peak = float(clip.abs().max())
            gain = PEAK / peak if peak > PEAK else 1.0
            save_audio(out_dir / name, clip * gain, config.sample_rate)
            clips.append({"path": name, "label": labels[start + k], "spectral_convergence_db": sc[k],
                          "log_spectral_distance_db": lsd[k], "gain": gain})
        if bar is not None:
            bar.update(len(wave))
    if bar is not None:
        bar.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label"])
    writer.writerows((c["path"], c["label"]) for c in clips)
    atomic_write_text(out_dir / "manifest.csv", buffer.getvalue())
    summary = {"clips": clips, "reconstruct": reconstruct.to_dict(), "features": config.to_dict(),
               "mean_spectral_convergence_db": statistics.fmean(c["spectral_convergence_db"] for c in clips),
               "mean_log_spectral_distance_db": statistics.fmean(c["log_spectral_distance_db"] for c in clips)}
    atomic_write_json(out_dir / "reconstruction.json", summary)
    return summary


def class_clip_names(labels: Sequence[int], class_names: Sequence[str]) -> List[str]:
    """``{class}_{k:03d}.wav`` names, k counting the samples of each class."""
    counts: Dict[int, int] = {}
    names = []
    for label in labels:
        k = counts.get(label, 0)
        counts[label] = k + 1
        names.append(f"{class_names[label]}_{k:03d}.wav")
    return names


def _load_set(path: Path):
    """(features in raw FD-MFCC units, WAV names, labels as text, FeatureConfig) of a saved file."""
    from ..data import FeatureNorm

    obj = load_artifact(path)
    kind = obj.get("kind")
    config = obj.get("config", {})
    if "features" not in config or "features" not in obj:
        raise FileFormatError(f"{path}: a {kind!r} file without features or their FeatureConfig")
    features_config = FeatureConfig.from_dict(config["features"])
    features = obj["features"]
    if kind == "features":
        stems = [Path(p).stem for p in obj["paths"]]
        names = [f"{i:05d}_{stem}.wav" for i, stem in enumerate(stems)]
        return features, names, [""] * len(names), features_config
    if kind == "distilled":
        labels = obj["labels"].tolist()
        class_names = config.get("class_names") or [str(c) for c in range(max(labels) + 1)]
        if config.get("standardized"):
            features = FeatureNorm.from_payload(obj, str(path)).invert(features.float())
        return features, class_clip_names(labels, class_names), [class_names[c] for c in labels], features_config
    raise FileFormatError(f"{path}: holds {kind!r}; expected a features or distilled file")


def write_distilled_audio(path: Path, out_dir: Path, reconstruct: Optional[ReconstructConfig] = None,
                          progress: bool = False) -> dict:
    """Reconstruct every sample of a distilled (or features) file into ``out_dir``; see :func:`write_audio_set`."""
    features, names, labels, config = _load_set(Path(path))
    return write_audio_set(features, names, labels, config, Path(out_dir), reconstruct, progress)


def main(args: argparse.Namespace) -> int:
    if args.n_iter < 0 or args.nnls_iter < 0:
        raise ParameterError(f"--n-iter and --nnls-iter must be >= 0, got {args.n_iter}, {args.nnls_iter}")
    features, names, labels, config = _load_set(args.file)
    if args.limit is not None:
        if args.limit < 1:
            raise ParameterError(f"--limit must be >= 1, got {args.limit}")
        features, names, labels = features[:args.limit], names[:args.limit], labels[:args.limit]
    if len(names) == 0:
        raise ParameterError(f"{args.file} holds no samples")
    if args.out.exists() and any(args.out.glob("*.wav")) and not args.overwrite:
        raise ParameterError(f"{args.out} already holds WAV files; pass --overwrite or choose another --out")
    reconstruct = ReconstructConfig(n_iter=args.n_iter, nnls_iter=args.nnls_iter, seed=args.seed)
    summary = write_audio_set(features, names, labels, config, args.out, reconstruct, progress=True)
    print(f"wrote {len(names)} WAVs to {args.out}; mean spectral convergence "
          f"{summary['mean_spectral_convergence_db']:.2f} dB, mean log-spectral distance "
          f"{summary['mean_log_spectral_distance_db']:.2f} dB")
    return 0
