"""Feature sets back to audio files: WAVs, ``manifest.csv`` and ``reconstruction.json`` (spectral convergence
and log-spectral distance of every clip) for a ``ddfad features`` file or a distilled set."""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .. import pause
from ..config import FeatureConfig, ReconstructConfig
from ..errors import DDFADError, FileFormatError
from ..io import atomic_write_json, atomic_write_text, load_artifact
from ..names import is_plain_name, numbered_names, unique_stems

PEAK = 0.99       # clips louder than this are scaled down to it before writing 16-bit PCM


BATCH = 64


def write_audio_set(features: torch.Tensor, names: Sequence[str], labels: Sequence[str], config: FeatureConfig,
                    out_dir: Path, reconstruct: Optional[ReconstructConfig] = None, progress: bool = False) -> dict:
    """Reconstruct ``features`` (N, 3, n_mfcc, T) in raw FD-MFCC units to ``out_dir/NAME.wav``.

    Also writes ``manifest.csv`` (path,label) and ``reconstruction.json``; returns that JSON's dict.
    """
    from ..audio import log_spectral_distance, save_audio, spectral_convergence
    from ..ops.reconstruct import fd_mfcc_to_audio
    from ..ops.reference import preemphasis

    reconstruct = reconstruct or ReconstructConfig()
    bad = next((n for n in names if not is_plain_name(n)), None)
    if bad is not None or len({n.casefold() for n in names}) != len(names):
        raise DDFADError(f"clip names must be distinct plain file names (see ddfad_fast.names), got {bad or names!r}")
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
            pause.point("audio")
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
    """``{class}_{k:03d}.wav`` names, k counting the samples of each class; the class name made a safe, unique
    file-name stem (:func:`ddfad_fast.names.numbered_names`: never a path, whatever the label holds)."""
    return numbered_names([str(class_names[label]) for label in labels])


def input_clip_names(paths: Sequence[str]) -> List[str]:
    """``{i:05d}_{stem}.wav`` for the i-th input file: its stem made safe (unique through the number)."""
    stems = unique_stems([Path(p).stem for p in paths], fallback="clip")
    return [f"{i:05d}_{stems[Path(p).stem]}.wav" for i, p in enumerate(paths)]


def load_feature_set(path: Path):
    """(features in raw FD-MFCC units, WAV names, labels as text, FeatureConfig) of a saved file."""
    from ..data import FeatureNorm

    obj = load_artifact(path)           # its schema is checked there: features, labels, class names agree
    kind = obj.get("kind")
    config = obj.get("config", {})
    if kind not in ("features", "distilled"):
        raise FileFormatError(f"{path}: holds {kind!r}; expected a features or distilled file")
    features_config = FeatureConfig.from_dict(config["features"])
    features = obj["features"]
    if kind == "features":
        names = input_clip_names(obj["paths"])
        return features, names, [""] * len(names), features_config
    if kind == "distilled":
        labels = obj["labels"].tolist()
        class_names = config.get("class_names") or [str(c) for c in range(int(config["num_classes"]))]
        if config.get("standardized"):
            features = FeatureNorm.from_payload(obj, str(path)).invert(features.float())
        return features, class_clip_names(labels, class_names), [class_names[c] for c in labels], features_config
    raise FileFormatError(f"{path}: holds {kind!r}; expected a features or distilled file")


def write_distilled_audio(path: Path, out_dir: Path, reconstruct: Optional[ReconstructConfig] = None,
                          progress: bool = False) -> dict:
    """Reconstruct every sample of a distilled (or features) file into ``out_dir``; see :func:`write_audio_set`."""
    features, names, labels, config = load_feature_set(Path(path))
    return write_audio_set(features, names, labels, config, Path(out_dir), reconstruct, progress)
