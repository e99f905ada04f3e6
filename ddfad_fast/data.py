"""Labelled audio datasets -> FD-MFCC feature tensors, with an on-disk feature cache.

Sources (:func:`load_feature_split`):

* a folder of FSDD-named WAVs ``{label}_{speaker}_{index}.wav``: the official split, index 0-4 is test;
* a folder with one sub-folder per class: a deterministic seeded 10% test split per class;
* a CSV manifest ``path,label[,split]`` (split "train" or "test"; rows without one are split like the
  sub-folder layout); relative paths are relative to the CSV's folder; a header row is allowed.

Files that cannot be read, and names/labels that don't parse, are skipped and listed with the reason
in :attr:`FeatureSplit.skipped` (``strict=True`` raises :class:`AudioFileError` naming the file).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import random
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .config import FeatureConfig
from .errors import AudioFileError, FileFormatError, ParameterError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")
FSDD_PATTERN = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>\d+)\.(wav|flac|ogg|aiff|aif)$",
                          re.IGNORECASE)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
FSDD_NUM_RECORDINGS = 3000
TEST_FRACTION = 0.1
log = logging.getLogger(__name__)
_BATCH = 256


@dataclass
class FeatureSplit:
    """Train/test (and, after :func:`carve_validation`, validation) FD-MFCC features: ``x_*`` (N, 3, n_mfcc, T)
    float32, ``y_*`` (N,) int64 class indices."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: List[str]
    feature_config: FeatureConfig
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    speakers_train: Optional[List[Optional[str]]] = None     # per training clip, where the source names speakers
    paths_train: Optional[List[str]] = None                  # the audio file of each training clip
    x_val: Optional[Tensor] = None                           # validation clips carved from the training data
    y_val: Optional[Tensor] = None
    norm: Optional["FeatureNorm"] = None                     # set when the x_* are standardised with it

    def standardized(self, norm: Optional["FeatureNorm"] = None, in_place: bool = False) -> "FeatureSplit":
        """A copy whose features are standardised with ``norm`` (default: fitted on ``x_train``).
        ``in_place``: overwrite this split's feature tensors instead of allocating new ones (the same values;
        for features this split alone holds, as :func:`load_feature_split` makes them)."""
        if self.norm is not None:
            raise ParameterError("this split is already standardised")
        norm = norm or FeatureNorm.fit(self.x_train)
        apply = norm.apply_ if in_place else norm.apply
        return dataclasses.replace(self, x_train=apply(self.x_train), x_test=apply(self.x_test),
                                   x_val=None if self.x_val is None else apply(self.x_val), norm=norm)

    def materialized(self) -> "FeatureSplit":
        """A copy whose features are tensors in memory (stored features are read whole; tensors stay)."""
        from .store import in_memory
        return dataclasses.replace(self, x_train=in_memory(self.x_train), x_test=in_memory(self.x_test),
                                   x_val=None if self.x_val is None else in_memory(self.x_val))

    def to(self, device: Union[str, torch.device]) -> "FeatureSplit":
        """A copy whose features and labels are on ``device`` (the standardisation stays on the CPU)."""
        move = (lambda t: None if t is None else t.to(device))
        return dataclasses.replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                                   x_test=move(self.x_test), y_test=move(self.y_test), x_val=move(self.x_val),
                                   y_val=move(self.y_val))

    def monitor_set(self) -> Tuple[str, Tensor, Tensor]:
        """("val", x_val, y_val) when there is a validation split, else ("test", x_test, y_test): what
        progress bars and other choices during a run may look at."""
        if self.x_val is not None and len(self.y_val):
            return "val", self.x_val, self.y_val
        return "test", self.x_test, self.y_test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class _Item:
    path: Path
    label: str
    split: Optional[str]     # "train" | "test" | None (decided by the seeded split)
    speaker: Optional[str] = None   # FSDD names and a manifest's 4th column name one; used to stratify validation


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS


def discover(source: Union[str, Path]) -> Tuple[List[_Item], List[Tuple[str, str]]]:
    """Labelled files of ``source`` (folder or CSV manifest) and the (file, reason) pairs skipped."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _discover_csv(source)
    if not source.is_dir():
        raise ParameterError(f"data source {source} is neither a folder nor a .csv manifest")
    subdirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        items = [_Item(f, d.name, None) for d in subdirs for f in sorted(d.iterdir()) if _is_audio(f)]
        return items, []
    items, skipped = [], []
    for f in sorted(source.iterdir()):
        if not _is_audio(f):
            continue
        m = FSDD_PATTERN.match(f.name)
        if m is None:
            skipped.append((str(f), "name does not match {label}_{speaker}_{index}.wav (or another audio suffix)"))
            continue
        items.append(_Item(f, m.group("label"), "test" if int(m.group("index")) <= 4 else "train", m.group("speaker")))
    return items, skipped


def _discover_csv(manifest: Path) -> Tuple[List[_Item], List[Tuple[str, str]]]:
    items, skipped = [], []
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    for line, row in enumerate(rows, start=2 if rows else 1):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        if len(row) < 2 or not row[1]:
            skipped.append((f"{manifest}:{line}", "row needs path,label[,split]"))
            continue
        split = row[2].lower() if len(row) > 2 and row[2] else None
        if split not in (None, "train", "test"):
            skipped.append((row[0], f"split {row[2]!r} is not 'train' or 'test'"))
            continue
        path = Path(row[0]) if Path(row[0]).is_absolute() else manifest.parent / row[0]
        speaker = row[3] if len(row) > 3 and row[3] else None
        items.append(_Item(path, row[1], split, speaker))
    return items, skipped


def _assign_splits(items: Sequence[_Item], seed: int = 0) -> List[_Item]:
    """Give every item without a split one: per class, a seeded TEST_FRACTION (>= 1 if the class has >= 2)."""
    by_label: Dict[str, List[_Item]] = {}
    for it in items:
        if it.split is None:
            by_label.setdefault(it.label, []).append(it)
    assigned = {}
    for label, group in by_label.items():
        order = sorted(group, key=lambda i: str(i.path))
        random.Random(f"{seed}:{label}").shuffle(order)
        n_test = max(1, round(TEST_FRACTION * len(order))) if len(order) >= 2 else 0
        for k, it in enumerate(order):
            assigned[it] = _Item(it.path, it.label, "test" if k < n_test else "train", it.speaker)
    return [assigned.get(it, it) for it in items]


def _limit_per_class(items: Sequence[_Item], max_per_class: Optional[int]) -> List[_Item]:
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


def _class_names(labels: Sequence[str]) -> List[str]:
    unique = set(labels)
    if all(l.lstrip("-").isdigit() for l in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def extract_features(paths: Sequence[Union[str, Path]], config: FeatureConfig, strict: bool = False,
                     progress: Any = True, batch_size: int = _BATCH) -> Tuple[Tensor, List[int], List[Tuple[str, str]]]:
    """FD-MFCC of audio files, batched: ``(features (N, 3, n_mfcc, T) float32, kept indices, skipped)``.

    Each file is loaded with :func:`ddfad_fast.load_audio` (mono, resampled to ``config.sample_rate``)
    and padded / cropped to ``config.fixed_length``. A file that cannot be used (unreadable, empty,
    non-finite samples) is skipped and listed as (file, reason); with ``strict`` it raises
    :class:`AudioFileError` naming the file instead, and a file at another sample rate is refused
    rather than resampled. ``progress``: True for a progress bar, or a tqdm
    bar to advance (one step per file).
    """
    from .store import transformed_batches

    if config.fixed_length is None:
        raise ParameterError("feature extraction of files needs FeatureConfig.fixed_length, got None")
    kept: List[int] = []
    skipped: List[Tuple[str, str]] = []
    chunks: List[Tensor] = []
    bar, own_bar = (progress, False) if hasattr(progress, "update") else (None, bool(progress))
    if own_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(paths), desc="features", unit="clip")
    batches = [list(range(s, min(s + batch_size, len(paths)))) for s in range(0, len(paths), batch_size)]
    for _, good, x, bad in transformed_batches(paths, config, strict, batches, workers=0):
        if good:
            chunks.append(x)
            kept += good
        skipped += [(str(paths[i]), reason) for i, reason in bad]
        if bar is not None:
            bar.update(len(good) + len(bad))
    if own_bar:
        bar.set_postfix(read=len(kept), skipped=len(skipped))
        bar.close()
    n_frames = config.n_frames(config.fixed_length)
    x = torch.cat(chunks) if chunks else torch.zeros(0, 3, config.n_mfcc, n_frames)
    return x, kept, skipped


IN_MEMORY_LIMIT_GB = 2.0      # load_feature_split reads a larger store batch by batch (see in_memory)
FIT_IN_ONE_PASS_BYTES = 2 ** 29   # FeatureNorm.fit of larger features goes over chunks (no float64 copy)


def load_feature_split(source: Union[str, Path], feature_config: Optional[FeatureConfig] = None,
                       cache_dir: Optional[Path] = None, strict: bool = False, progress: bool = True,
                       max_per_class: Optional[int] = None, val_fraction: float = 0.0,
                       in_memory: Optional[bool] = None, workers: Optional[int] = None,
                       max_memory_gb: Optional[float] = None,
                       reserve: Optional[Callable[[Tuple[int, int, int], int], int]] = None,
                       standardize: Union[bool, "FeatureNorm"] = False) -> FeatureSplit:
    """FD-MFCC features (N, 3, n_mfcc, T) and labels of a labelled audio source, split train/test.

    Features go through a sharded feature store (:mod:`ddfad_fast.store`) in ``cache_dir``, in a folder
    named by a hash of the FeatureConfig, ``strict`` and the file list (paths, labels, splits, speakers,
    sizes, mtimes): a store of another config or file list is never used, an unfinished one is resumed
    shard by shard. Under torchrun the ranks compute disjoint shards. ``cache_dir`` None: a temporary
    store, read into memory. ``in_memory``: True reads the features into tensors; False leaves them on
    disk as :class:`ddfad_fast.store.StoredFeatures` views (read batch by batch, memory independent of
    the corpus); None (default) reads them into memory when they take at most ``IN_MEMORY_LIMIT_GB``.
    ``max_per_class``: keep at most that many files per class in each split (sorted order).
    ``val_fraction`` > 0 carves a validation split from the training clips (:func:`carve_validation`).
    ``workers``: decoding processes (default :func:`ddfad_fast.store.default_workers`).
    ``max_memory_gb``: the feature computation is planned to fit it (:func:`ddfad_fast.store.plan_features`)
    and, with ``in_memory`` None, the features are read into memory only when they fit beside
    ``reserve(in_shape, num_classes)`` bytes (what the caller's training needs,
    :func:`ddfad_fast.memory.features_in_memory`; ResourceError when even the reserve does not fit). Raises
    ``standardize``: True fits a :class:`FeatureNorm` on the training clips and standardises every split
    with it, a FeatureNorm standardises with that one (in place or as a view: no second copy of the
    features). Features read into memory take their memory once: each split is read from its store
    view after the validation split is carved. Raises ParameterError if no class has training clips,
    AudioFileError on a bad file with ``strict``.
    """
    from .store import build_store

    config = (feature_config or FeatureConfig()).validate()
    if cache_dir is None:
        items, skipped = labelled_items(source, config, max_per_class)
        with tempfile.TemporaryDirectory() as tmp:
            store = build_store(items, config, tmp, strict=strict, progress=progress, workers=workers, local=True)
            return _finish_split(_split_from_store(store, skipped), val_fraction, True, standardize)
    else:
        from .memory import features_in_memory, process_rss_bytes
        from .store import plan_features
        shard_size, batch_size, workers = plan_features(config, max_memory_gb, workers)
        store, skipped = prepare_store(source, config, cache_dir, strict=strict, progress=progress,
                                       max_per_class=max_per_class, workers=workers, shard_size=shard_size,
                                       batch_size=batch_size)
        if in_memory is None and max_memory_gb is not None:
            need = reserve(store.clip_shape, len(set(store.column("label")))) if reserve is not None else 0
            in_memory = features_in_memory(store.nbytes, need, max_memory_gb, process_rss_bytes())
        elif in_memory is None:
            in_memory = store.nbytes <= IN_MEMORY_LIMIT_GB * 2 ** 30
        return _finish_split(_split_from_store(store, skipped), val_fraction, in_memory, standardize)


def _finish_split(split: FeatureSplit, val_fraction: float, in_memory: bool,
                  standardize: Union[bool, "FeatureNorm"]) -> FeatureSplit:
    """Validation split carved from the store views, then read into memory, then standardised in place."""
    split = carve_validation(split, val_fraction) if val_fraction > 0 else split
    if in_memory:
        split = split.materialized()
    if standardize is not False:
        split = split.standardized(standardize if isinstance(standardize, FeatureNorm) else None, in_place=True)
    return split


def labelled_items(source: Union[str, Path], config: FeatureConfig, max_per_class: Optional[int] = None):
    """The labelled files of ``source`` with their splits (seeded where the source gives none), at most
    ``max_per_class`` per class and split: ``(items, files skipped while discovering)``."""
    if config.fixed_length is None:
        raise ParameterError("datasets need FeatureConfig.fixed_length (clips are batched at one length), got None")
    items, skipped = discover(source)
    items = _limit_per_class(_assign_splits(items), max_per_class)
    if not items:
        raise ParameterError(f"no labelled audio files found in {source}")
    return items, skipped


def prepare_store(source: Union[str, Path], config: FeatureConfig, cache_dir: Union[str, Path], strict: bool = False,
                  progress: bool = True, max_per_class: Optional[int] = None, workers: Optional[int] = None,
                  shard_size: Optional[int] = None, batch_size: Optional[int] = None):
    """The feature store of a labelled source in ``cache_dir`` (built or resumed when needed; under torchrun
    the ranks compute disjoint shards and rank 0 writes the index): ``(FeatureStore, files skipped while
    discovering the source)``. The folder is ``cache_dir/store_<hash>``, the hash of :func:`store_key`."""
    from .store import DEFAULT_BATCH, DEFAULT_SHARD_SIZE, build_store, store_key

    config = config.validate()
    items, skipped = labelled_items(source, config, max_per_class)
    key = store_key(items, config, strict)
    store = build_store(items, config, Path(cache_dir) / f"store_{key[:20]}", strict=strict, progress=progress,
                        workers=workers, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                        batch_size=batch_size or DEFAULT_BATCH, key=key)
    return store, skipped


def _split_from_store(store, skipped: List[Tuple[str, str]]) -> FeatureSplit:
    return _make_split(store.features(), store.column("label"), store.column("split"), store.config,
                       skipped + list(store.skipped), store.column("speaker"), store.column("path"))


def take_rows(x, index) -> Any:
    """Rows ``index`` (index tensor or boolean mask) of features ``x``: a tensor, or for stored features
    another view of the store (nothing is read)."""
    from .store import StoredFeatures
    return x.subset(index) if isinstance(x, StoredFeatures) else x[index].contiguous()


def _make_split(x, labels: List[str], splits: List[str], config: FeatureConfig,
                skipped: List[Tuple[str, str]], speakers: Optional[List[Optional[str]]] = None,
                paths: Optional[List[str]] = None) -> FeatureSplit:
    names = _class_names(labels)
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index[l] for l in labels], dtype=torch.int64)
    is_test = torch.tensor([s == "test" for s in splits], dtype=torch.bool)
    if (~is_test).sum() == 0:
        raise ParameterError("the data source has no training clips")
    train_speakers = None
    if speakers and len(speakers) == len(labels):
        train_speakers = [sp for sp, test in zip(speakers, is_test.tolist()) if not test]
    train_paths = None
    if paths and len(paths) == len(labels):
        train_paths = [p for p, test in zip(paths, is_test.tolist()) if not test]
    return FeatureSplit(take_rows(x, ~is_test), y[~is_test], take_rows(x, is_test), y[is_test],
                        names, config, list(skipped), train_speakers, train_paths)


def carve_validation(split: FeatureSplit, fraction: float = 0.1, seed: int = 0) -> FeatureSplit:
    """Move a seeded, stratified ``fraction`` of the training clips into a validation split.

    Strata are (class, speaker) where the source names speakers (FSDD names, a manifest's 4th column),
    else classes; each stratum gives round(fraction x size) clips (at least 1 from a stratum of >= 2 when
    that rounds to 0, at most size - 1), drawn by a permutation seeded with ``seed`` and the stratum's
    name, so the split does not depend on file order or on other classes. Every choice of a preset,
    early stopping or sweep is made on this split; the test split is kept for the reported numbers.
    Returns a new FeatureSplit with ``x_val`` / ``y_val`` set and ``x_train`` / ``y_train`` reduced.
    """
    if not 0.0 < fraction < 1.0:
        raise ParameterError(f"validation fraction must be in (0, 1), got {fraction}")
    if split.x_val is not None:
        raise ParameterError("this split already has a validation split")
    speakers = split.speakers_train or [None] * len(split.y_train)
    strata: Dict[Tuple[int, str], List[int]] = {}
    for i, (label, speaker) in enumerate(zip(split.y_train.tolist(), speakers)):
        strata.setdefault((label, speaker or ""), []).append(i)
    val: List[int] = []
    for (label, speaker), members in sorted(strata.items()):
        n = len(members)
        take = int(math.floor(fraction * n + 0.5))
        take = min(max(take, 1 if n >= 2 else 0), n - 1)
        if take > 0:
            gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{seed}:{split.class_names[label]}:{speaker}"
                                                                   .encode()).hexdigest()[:15], 16))
            order = torch.randperm(n, generator=gen)[:take]
            val.extend(members[j] for j in order.tolist())
    is_val = torch.zeros(len(split.y_train), dtype=torch.bool)
    is_val[torch.tensor(sorted(val), dtype=torch.int64)] = True
    if bool(is_val.all()):
        raise ParameterError(f"cannot carve a validation split of {fraction:g} from {len(split.y_train)} training clips")
    if not bool(is_val.any()):          # every stratum has a single clip: no validation split (monitor_set says so)
        log.warning("no validation split: every (class, speaker) group of the training clips has a single clip")
    keep = (~is_val).tolist()
    return dataclasses.replace(
        split, x_train=take_rows(split.x_train, ~is_val), y_train=split.y_train[~is_val],
        speakers_train=[sp for sp, k in zip(speakers, keep) if k] if split.speakers_train else None,
        paths_train=[p for p, k in zip(split.paths_train, keep) if k] if split.paths_train else None,
        x_val=take_rows(split.x_train, is_val), y_val=split.y_train[is_val])


@dataclass(frozen=True)
class FeatureNorm:
    """Standardisation of FD-MFCC features: ``(x - mean) / std`` with ``mean``/``std`` (3, n_mfcc, 1), one
    pair per channel and coefficient (a per-channel scalar would leave c0, tens of dB wider than the other
    coefficients, dominating). Travels inside every artefact that needs it (experts, distilled sets)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> "FeatureNorm":
        """Mean and std over clips and frames of training features ``x`` (N, 3, n_mfcc, T): in float64 at once,
        or for stored features and tensors whose float64 copy would exceed FIT_IN_ONE_PASS_BYTES in two
        passes over chunks (the same statistics up to the order of the float64 sums)."""
        if x.dim() != 4 or x.shape[0] < 2:
            raise ParameterError(f"need (N >= 2, 3, n_mfcc, T) features to fit a standardisation, got {tuple(x.shape)}")
        if hasattr(x, "chunks") or x.numel() * 8 > FIT_IN_ONE_PASS_BYTES:
            chunks = x.chunks if hasattr(x, "chunks") else (lambda: x.split(1024))
            count = x.shape[0] * x.shape[3]
            mean = sum(c.double().sum(dim=(0, 3)) for c in chunks()) / count
            var = sum(((c.double() - mean[None, :, :, None]) ** 2).sum(dim=(0, 3)) for c in chunks()) / (count - 1)
            return cls(mean[..., None].float(), var.sqrt()[..., None].clamp_min(1e-6).float())
        x64 = x.detach().double()
        mean = x64.mean(dim=(0, 3), keepdim=True)[0]
        std = x64.std(dim=(0, 3), keepdim=True)[0].clamp_min(1e-6)
        return cls(mean.float(), std.float())

    def apply(self, x: Tensor) -> Tensor:
        """Standardised features, (N, 3, n_mfcc, T) -> same shape (stored features: a view that
        standardises what it reads)."""
        self._check(x)
        if hasattr(x, "standardized_by"):
            return x.standardized_by(self)
        return (x - self.mean.to(x)) / self.std.to(x)

    def apply_(self, x: Tensor) -> Tensor:
        """:meth:`apply` overwriting ``x`` (the same values, no second copy of the features); stored features
        get a standardising view as with :meth:`apply`."""
        self._check(x)
        if hasattr(x, "standardized_by"):
            return x.standardized_by(self)
        return x.sub_(self.mean.to(x)).div_(self.std.to(x))

    def invert(self, x: Tensor) -> Tensor:
        """Features in raw FD-MFCC units (dB-scaled cepstra) from standardised ones."""
        self._check(x)
        return x * self.std.to(x) + self.mean.to(x)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:3]) != tuple(self.mean.shape[:2]):
            raise ParameterError(f"features of shape {tuple(x.shape)} do not match a standardisation of "
                                 f"(3, {self.mean.shape[1]}) channels x coefficients")

    def to_payload(self) -> Dict[str, Tensor]:
        return {"norm_mean": self.mean.float().cpu(), "norm_std": self.std.float().cpu()}

    @classmethod
    def from_payload(cls, obj: Dict[str, Any], where: str = "") -> "FeatureNorm":
        if "norm_mean" not in obj or "norm_std" not in obj:
            raise FileFormatError(f"{where}: holds no feature standardisation (norm_mean / norm_std)")
        return cls(obj["norm_mean"].float(), obj["norm_std"].float())


def extract_recordings(zip_path: Union[str, Path], to_dir: Union[str, Path],
                       expected_count: Optional[int] = FSDD_NUM_RECORDINGS) -> List[Path]:
    """Extract the ``*/recordings/*.wav`` members of an FSDD archive into ``to_dir`` (flat).

    Raises FileFormatError if the archive is unreadable or holds a different number of recordings
    than ``expected_count`` (None skips the check).
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
    """Download the Free Spoken Digit Dataset archive from ``url`` and extract its 3,000 WAVs into ``to_dir``."""
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "fsdd.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(zip_path, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise AudioFileError(f"could not download {url}: {exc}") from None
        return extract_recordings(zip_path, to_dir)
