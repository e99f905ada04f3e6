"""Labelled audio datasets -> FD-MFCC feature tensors, with an on-disk feature cache.

Sources (:func:`load_feature_split`):

* a folder of FSDD-named WAVs ``{label}_{speaker}_{index}.wav``: the official split, index 0-4 is test;
* a folder with one sub-folder per class: a deterministic seeded 10% test split per class;
* a CSV manifest ``path,label[,split]`` (split "train" or "test"; rows without one are split like the
  sub-folder layout); relative paths are relative to the CSV's folder; a header row is allowed.

Files that cannot be read, and names/labels that don't parse, are skipped and listed with the reason
in :attr:`FeatureSplit.skipped` (``strict=True`` raises :class:`AudioFileError` naming the file). Listing a
folder or manifest (sub-folders beside FSDD names, FIFOs, link loops, duplicate or conflicting rows, byte-order
marks, Latin-1) is :mod:`ddfad_fast.data.listing`'s.
"""
from __future__ import annotations

import logging
import random
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union


from ..config import FeatureConfig
from ..errors import AudioFileError, FileFormatError, ParameterError
from .listing import folder_rows, manifest_rows

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")
FSDD_PATTERN = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>\d+)\.(wav|flac|ogg|aiff|aif)$",
                          re.IGNORECASE)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
FSDD_NUM_RECORDINGS = 3000
TEST_FRACTION = 0.1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    split: Optional[str]     # "train" | "test" | None (decided by the seeded split)
    speaker: Optional[str] = None   # FSDD names and a manifest's 4th column name one; used to stratify validation


def discover(source: Union[str, Path]) -> Tuple[List[Item], List[Tuple[str, str]]]:
    """Labelled files of a folder or CSV manifest, and the entries skipped.

    Parameters
    ----------
    source : str or Path
        A folder (FSDD names or class sub-folders) or a ``.csv`` manifest (path, label[, split[, speaker]]).

    Returns
    -------
    (list of Item, list of (str, str))
        The files, and (file, reason) pairs skipped (:mod:`ddfad_fast.data.listing`: every entry is used
        or listed, a file listed twice is used once).

    Raises
    ------
    ParameterError
        ``source`` is neither a folder nor a ``.csv`` file.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        rows, skipped = manifest_rows(source)
    elif source.is_dir():
        rows, skipped = folder_rows(source, FSDD_PATTERN, AUDIO_EXTENSIONS)
    else:
        raise ParameterError(f"data source {source} is neither a folder nor a .csv manifest")
    return [Item(*row) for row in rows], skipped


def input_paths(source: Union[str, Path]) -> List[Path]:
    """``source`` and every file it lists (what ``--overwrite`` must never delete); just ``source`` when it
    cannot be listed."""
    try:
        items, _ = discover(source)
    except (OSError, ParameterError):
        items = []
    return [Path(source)] + [Path(it.path) for it in items]


def _assign_splits(items: Sequence[Item], seed: int = 0) -> List[Item]:
    """Give every item without a split one: per class, a seeded TEST_FRACTION (>= 1 if the class has >= 2)."""
    by_label: Dict[str, List[Item]] = {}
    for it in items:
        if it.split is None:
            by_label.setdefault(it.label, []).append(it)
    assigned = {}
    for label, group in by_label.items():
        order = sorted(group, key=lambda i: str(i.path))
        random.Random(f"{seed}:{label}").shuffle(order)
        n_test = max(1, round(TEST_FRACTION * len(order))) if len(order) >= 2 else 0
        for k, it in enumerate(order):
            assigned[it] = Item(it.path, it.label, "test" if k < n_test else "train", it.speaker)
    return [assigned.get(it, it) for it in items]


def _limit_per_class(items: Sequence[Item], max_per_class: Optional[int]) -> List[Item]:
    """At most ``max_per_class`` files per (class, split), first in sorted-path order."""
    if max_per_class is None:
        return list(items)
    if max_per_class < 1:
        raise ParameterError(f"max_per_class must be >= 1 or None, got {max_per_class}")
    counts: Dict[Tuple[str, str], int] = {}
    out = []
    for it in sorted(items, key=lambda i: str(i.path)):
        key = (it.label, it.split)
        if counts.get(key, 0) < max_per_class:
            counts[key] = counts.get(key, 0) + 1
            out.append(it)
    return out


def labelled_items(source: Union[str, Path], config: FeatureConfig, max_per_class: Optional[int] = None):
    """The labelled files of a source with their splits (seeded where the source gives none).

    Parameters
    ----------
    source : str or Path
        A folder or CSV manifest.
    config : FeatureConfig
        Must set ``fixed_length`` (clips are batched at one length).
    max_per_class : int, optional
        Keep at most this many files per class and split (sorted order).

    Returns
    -------
    (list of Item, list of (str, str))
        The files, and the files skipped while discovering.

    Raises
    ------
    ParameterError
        No fixed length, or no labelled audio file.
    """
    if config.fixed_length is None:
        raise ParameterError("datasets need FeatureConfig.fixed_length (clips are batched at one length), got None")
    items, skipped = discover(source)
    items = _limit_per_class(_assign_splits(items), max_per_class)
    if not items:
        raise ParameterError(f"no labelled audio files found in {source}")
    return items, skipped


def extract_recordings(zip_path: Union[str, Path], to_dir: Union[str, Path],
                       expected_count: Optional[int] = FSDD_NUM_RECORDINGS) -> List[Path]:
    """Extract the ``*/recordings/*.wav`` members of an FSDD archive into a flat folder.

    Parameters
    ----------
    zip_path : str or Path
        The archive.
    to_dir : str or Path
        Destination folder (created).
    expected_count : int or None
        Recordings the archive must hold (None skips the check).

    Returns
    -------
    list of Path
        The extracted files.

    Raises
    ------
    FileFormatError
        The archive is unreadable, holds another number of recordings, or a name that is not FSDD's.
    """
    to_dir = Path(to_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileFormatError(f"{zip_path}: not a readable zip archive ({exc})") from None
    with archive:
        members = [m for m in archive.infolist()
                   if not m.is_dir() and "/recordings/" in f"/{m.filename}" and m.filename.lower().endswith(".wav")]
        if expected_count is not None and len(members) != expected_count:
            raise FileFormatError(f"{zip_path}: {len(members)} recordings, expected {expected_count}")
        to_dir.mkdir(parents=True, exist_ok=True)
        out = []
        for m in members:
            name = Path(m.filename).name
            if not FSDD_PATTERN.match(name):
                raise FileFormatError(f"{zip_path}: unexpected recording name {m.filename!r}")
            target = to_dir / name
            with archive.open(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    return out


def fetch_fsdd(to_dir: Union[str, Path], url: str = FSDD_URL, timeout: float = 60.0) -> List[Path]:
    """Download the Free Spoken Digit Dataset archive and extract its 3,000 WAVs.

    Parameters
    ----------
    to_dir : str or Path
        Destination folder.
    url : str
        The archive's address.
    timeout : float
        Seconds to wait for the server.

    Returns
    -------
    list of Path
        The extracted files.

    Raises
    ------
    AudioFileError
        The download failed.
    FileFormatError
        The archive is not FSDD's.
    """
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "fsdd.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(zip_path, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise AudioFileError(f"could not download {url}: {exc}") from None
        return extract_recordings(zip_path, to_dir)
