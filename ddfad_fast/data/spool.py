"""Labelled examples that are not files on disk (a Hugging Face dataset, an iterable of waveforms) -> a folder
of audio files and a CSV manifest: a source every command and the feature store read like any other.

:func:`spool_examples` streams the examples one at a time (memory independent of their number) into
``parent/source_<hash>/``: ``clips/NNNNNNN.<ext>`` (encoded audio as it came, e.g. the WAV or FLAC bytes of
a dataset's Audio column, written unchanged; a waveform as 32-bit float WAV, lossless for float32) and
``manifest.csv`` (``path,label,split,speaker``). The folder is named by a hash of every example's audio (its
bytes as stored, or its samples and rate), label, split and speaker, so the same examples give the same
folder (and the feature store built from it is found again on resume); examples are written into a temporary folder first and renamed when complete.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from ..errors import ParameterError

MANIFEST_NAME = "manifest.csv"
_MAGIC = ((b"RIFF", "wav"), (b"RIFX", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"FORM", "aiff"),
          (b"ID3", "mp3"), (b"\xff\xfb", "mp3"), (b"\xff\xf3", "mp3"), (b"\xff\xf2", "mp3"))


@dataclass
class Example:
    """One labelled clip: ``audio`` is encoded bytes (any format libsndfile reads), a waveform ((L,) or
    (C, L) float array, with ``sample_rate``) or a path to a file; ``split`` "train" | "test" | None."""

    audio: Any
    label: str
    sample_rate: Optional[int] = None
    split: Optional[str] = None
    speaker: Optional[str] = None
    suffix: Optional[str] = None          # file suffix of encoded bytes (else sniffed from the bytes)


def _encoded(example: Example, where: str) -> "tuple[bytes, str, bytes]":
    """(bytes of an audio file, its suffix, the bytes that identify the clip) for ``example``. A waveform is
    identified by its samples and rate, not by its WAV bytes (libsndfile stamps float WAVs with the time)."""
    audio = example.audio
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
        if not data:
            raise ParameterError(f"{where}: empty audio bytes")
        suffix = example.suffix or next((ext for magic, ext in _MAGIC if data.startswith(magic)), "wav")
        return data, suffix.lstrip(".").lower(), data
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise ParameterError(f"{where}: audio file {path} does not exist")
        data = path.read_bytes()
        return data, (path.suffix.lstrip(".") or "wav").lower(), data
    import soundfile
    import torch

    wave = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if example.sample_rate is None or int(example.sample_rate) <= 0:
        raise ParameterError(f"{where}: a waveform needs a sample rate > 0, got {example.sample_rate}")
    if wave.ndim not in (1, 2) or wave.shape[-1] == 0 or not np.issubdtype(wave.dtype, np.number):
        raise ParameterError(f"{where}: a waveform must be a numeric (L,) or (C, L) array with L > 0, "
                             f"got {wave.dtype} {wave.shape}")
    samples = np.ascontiguousarray(wave.astype(np.float32))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.T, int(example.sample_rate), format="WAV", subtype="FLOAT")
    identity = f"{int(example.sample_rate)}:{samples.shape}".encode() + samples.tobytes()
    return buffer.getvalue(), "wav", identity


def spool_examples(examples: Iterable[Example], parent: Union[str, Path], total: Optional[int] = None,
                   progress: Any = True, desc: str = "examples") -> Path:
    """Write ``examples`` as a folder of audio files with a manifest under ``parent``; returns the manifest
    path (``parent/source_<hash>/manifest.csv``). The same examples give the same folder: one already
    there is kept and the new copy dropped. ``total``: the number of examples for the progress bar (a
    tqdm.auto bar with ``progress``). ParameterError naming the example when one cannot be written."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".source_tmp_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "clips").mkdir(parents=True)
    digest = hashlib.sha256()
    count = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=desc, unit="clip")
    try:
        manifest = open(tmp / f"{MANIFEST_NAME}.part", "w", newline="", encoding="utf-8")
        writer = csv.writer(manifest)
        writer.writerow(["path", "label", "split", "speaker"])
        for k, example in enumerate(examples):
            if example.split not in (None, "train", "test"):
                raise ParameterError(f"example {k}: split {example.split!r} is not 'train', 'test' or None")
            data, suffix, identity = _encoded(example, f"example {k}")
            name = f"clips/{k:07d}.{suffix}"
            with open(tmp / name, "wb") as handle:
                handle.write(data)
            fields = [str(example.label), example.split or "", example.speaker or ""]
            digest.update(hashlib.sha256(identity).digest() + "\x1f".join([suffix] + fields).encode() + b"\x1e")
            writer.writerow([name] + fields)
            count += 1
            if bar is not None:
                bar.update(1)
        manifest.close()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    if not count:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ParameterError("the data holds no labelled examples")
    os.replace(tmp / f"{MANIFEST_NAME}.part", tmp / MANIFEST_NAME)
    final = parent / f"source_{digest.hexdigest()[:20]}"
    if (final / MANIFEST_NAME).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return final / MANIFEST_NAME


def iterable_examples(data: Iterable, where: str = "data") -> Iterable[Example]:
    """Examples of an iterable of ``(waveform, sample_rate, label)`` tuples (a 4th item, "train" / "test",
    gives the split; else it is drawn like a class sub-folder's)."""
    for k, item in enumerate(data):
        if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
            raise ParameterError(f"{where}: item {k} must be (waveform, sample_rate, label[, split]), "
                                 f"got {type(item).__name__}")
        split = item[3] if len(item) == 4 else None
        yield Example(item[0], str(item[2]), sample_rate=int(item[1]), split=split)
