"""A sharded, memory-mapped store of FD-MFCC features on disk: corpora larger than memory.

Layout of a store folder::

    index.json            format, version, FeatureConfig, key, shard size, one row per kept clip
                          (path, label, split, speaker), the skipped files with their reasons; written
                          last (by rank 0 under torchrun): a folder without it is an unfinished store
    shard_00000.npy       (n, 3, n_mfcc, T) float32, the kept clips of input files [0, S)
    shard_00000.json      which of those files were kept and which were skipped (and why): the marker
                          that the shard is finished, written after its .npy
    ...

Input file ``i`` belongs to shard ``i // shard_size``, so a shard's content depends only on its files and
the config: any process can write any shard, a store written by K processes is byte-identical to one
written by one (:func:`build_store` with ``rank`` / ``world_size``), and an interrupted build resumes
shard by shard. Clips are decoded by ``torch.utils.data.DataLoader`` worker processes while the main
process computes FD-MFCC on batches that never cross a shard boundary.

Reading is zero-copy: :class:`FeatureStore` maps each shard with ``numpy.load(mmap_mode="r")`` and
:class:`StoredFeatures` gathers only the rows a batch asks for, so training on a store needs memory for
a batch, not for the corpus.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import pause
from ..audio.files import RESAMPLER, load_audio
from ..config import FeatureConfig
from ..errors import AudioFileError, FileFormatError, ParameterError
from ..ops.features import fd_mfcc, fit_length
from ..io import atomic_write, atomic_write_json
from ..outputs import MARKER, hold, mark
from ..resources import check_fits
from ..schemas import check_store_index
from .listing import not_a_regular_file
from .shards import array_digest, read_record, verify_shard
from ..resources import DEFAULT_BATCH, DEFAULT_SHARD_SIZE, default_workers  # noqa: F401  (re-exported)
from .views import StoredFeatures, in_memory  # noqa: F401  (re-exported: the views of a store's rows)

STORE_FORMAT = "ddfad_fast.feature_store"
STORE_VERSION = 1
INDEX_NAME = "index.json"
Item = Any          # anything with .path, .label, .split, .speaker (ddfad_fast.data's items)


def _collate(batch):
    """A decoded batch as one transfer: (first file number, kept file numbers, (n, L) waves or None,
    [(file number, reason)] of the unusable files)."""
    kept = [i for i, wave, _ in batch if wave is not None]
    waves = torch.stack([wave for _, wave, _ in batch if wave is not None]) if kept else None
    return batch[0][0], kept, waves, [(i, reason) for i, wave, reason in batch if wave is None]


def store_key(items: Sequence[Item], config: FeatureConfig, strict: bool = False) -> str:
    """A hash of the FeatureConfig, ``strict``, the resampler and the file list (paths, labels, splits, speakers,
    sizes, modification times): a store answers exactly one of these."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    h.update(b":strict" if strict else b"")
    h.update(f":{RESAMPLER}".encode())
    for it in items:
        try:
            st = Path(it.path).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.abspath(it.path)}|{it.label}|{it.split}|{it.speaker}|{stamp}\n"
                 .encode("utf-8", "surrogateescape"))          # file names need not be UTF-8
    return h.hexdigest()


def _shard_name(k: int) -> str:
    return f"shard_{k:05d}"


class _Clips(torch.utils.data.Dataset):
    """Decoded, length-fitted clips of a file list: item ``i`` -> (i, wave (L,) float32 or None, reason)."""

    def __init__(self, paths: Sequence[Union[str, Path]], config: FeatureConfig, strict: bool) -> None:
        self.paths, self.config, self.strict = list(paths), config, strict

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        reason = not_a_regular_file(self.paths[i])          # a FIFO or device would block the decoder
        if reason is not None:
            if self.strict:
                raise AudioFileError(f"{self.paths[i]}: {reason}")
            return i, None, reason
        try:
            wave, _ = load_audio(self.paths[i], sample_rate=self.config.sample_rate, mono=True,
                                 resample_ok=not self.strict)
        except AudioFileError as exc:
            if self.strict:
                raise
            return i, None, str(exc).split(": ", 1)[-1]
        return i, fit_length(wave.float(), self.config.fixed_length).contiguous(), None


def _shard_done(folder: Path, k: int, key: str, shard_size: int) -> bool:
    if not (folder / f"{_shard_name(k)}.npy").is_file():
        return False
    obj = read_record(folder / f"{_shard_name(k)}.json")
    return (obj is not None and obj["key"] == key and obj["shard_size"] == shard_size
            and all(k * shard_size <= i < (k + 1) * shard_size for i in obj["kept"]))


def build_store(items: Sequence[Item], config: FeatureConfig, folder: Union[str, Path], strict: bool = False,
                shard_size: int = DEFAULT_SHARD_SIZE, workers: Optional[int] = None, batch_size: int = DEFAULT_BATCH,
                progress: Any = False, local: bool = False, key: Optional[str] = None) -> "FeatureStore":
    """Compute the FD-MFCC of files into a sharded store in ``folder``; return it opened.

    Shards already finished for the same key and shard size are kept (resume). Under torchrun (a process
    group of K ranks, :mod:`ddfad_fast.distributed`) rank ``r`` computes shards ``r, r + K, ...``, and rank
    0 writes the index once every rank has finished; a rank that fails makes every rank raise.

    Parameters
    ----------
    items : sequence of Item
        Labelled files.
    config : FeatureConfig
        Feature parameters; ``fixed_length`` must be set.
    folder : str or Path
        The store's folder (locked and marked while it is built).
    strict : bool
        The first unusable file raises AudioFileError naming it (else it is skipped with its reason).
    shard_size : int
        Clips per shard.
    workers : int, optional
        DataLoader decoding processes (default :func:`default_workers`, shared among the ranks of a
        machine; 0 decodes in this process).
    batch_size : int
        Clips per FD-MFCC call.
    progress : bool or tqdm
        Progress display.
    local : bool
        This process builds the whole store alone, even under torchrun (e.g. in a private folder).
    key : str, optional
        :func:`store_key` of these arguments when the caller has it (it stats every file).

    Returns
    -------
    FeatureStore
        The finished store.

    Raises
    ------
    ParameterError
        No fixed length.
    AudioFileError
        With ``strict``: the first unusable file.
    """
    from .. import distributed

    config = config.validate()
    if config.fixed_length is None:
        raise ParameterError("a feature store needs FeatureConfig.fixed_length (clips are stored at one length)")
    if shard_size < 1 or batch_size < 1:
        raise ParameterError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
    if workers is not None and workers < 0:
        raise ParameterError(f"workers (--workers) must be >= 0 (0: decode in this process), got {workers}")
    folder = Path(folder)
    key = key or store_key(items, config, strict)
    if index_key(folder / INDEX_NAME) == key:
        return FeatureStore(folder, key)
    rank, world = (0, 1) if local else (distributed.rank(), distributed.world_size())
    if workers is None:
        workers = max(0, default_workers() // world)
    check_fits(config, shard_size, batch_size, workers)

    def compute() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        _compute_shards(items, config, folder, key, shard_size, batch_size, strict, workers, progress, rank, world)

    with contextlib.ExitStack() as stack:
        if rank == 0 and not local:       # one process writes a store folder (the ranks of one torchrun share it)
            stack.enter_context(hold(folder, "feature store folder"))
            if not any(p.name != MARKER for p in folder.iterdir()):
                mark(folder, "store")     # made here: a later --overwrite may empty it
        if world > 1:
            distributed.together(compute)          # a rank that fails stops every rank
        else:
            compute()
        if rank == 0:
            write_index(items, config, folder, strict, shard_size, key=key)
    if world > 1:
        distributed.barrier()
    return FeatureStore(folder, key)


def transformed_batches(paths: Sequence[Union[str, Path]], config: FeatureConfig, strict: bool,
                        batches: Sequence[List[int]], workers: int) -> Iterator[tuple]:
    """FD-MFCC of the files of each of ``batches`` (lists of file numbers), in order: yields (first file
    number, kept file numbers, their features (n, 3, n_mfcc, T) float32 or None, [(file number, reason)]
    of the unusable files). Files are decoded (mono, resampled, padded / cropped) by ``workers`` DataLoader
    processes (0: here); ``strict``: an unusable file raises AudioFileError naming it."""
    loader = torch.utils.data.DataLoader(_Clips(paths, config, strict), batch_sampler=batches, num_workers=workers,
                                         collate_fn=_collate, prefetch_factor=2 if workers else None)
    for first, good, waves, bad in loader:
        yield first, good, fd_mfcc(waves, config.sample_rate, config).float() if good else None, bad


def _compute_shards(items: Sequence[Item], config: FeatureConfig, folder: Path, key: str, shard_size: int,
                    batch_size: int, strict: bool, workers: int, progress: Any, rank: int, world: int) -> None:
    """This rank's unfinished shards: decoded by ``workers`` processes, transformed here, written atomically."""
    n_shards = -(-len(items) // shard_size)
    mine = [k for k in range(rank, n_shards, world) if not _shard_done(folder, k, key, shard_size)]
    batches = [list(range(s, min(s + batch_size, stop)))
               for k in mine for stop in [min((k + 1) * shard_size, len(items))]
               for s in range(k * shard_size, stop, batch_size)]
    if not batches:
        return
    bar, own_bar = (progress, False) if hasattr(progress, "update") else (None, bool(progress) and rank == 0)
    if own_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(map(len, batches)), desc="features", unit="clip")
    clip_shape = (3, config.n_mfcc, config.n_frames(config.fixed_length))
    # two shard buffers: one is filled while the other is written (and fsynced) by a background thread
    buffers = [np.empty((shard_size,) + clip_shape, dtype=np.float32) for _ in range(2 if len(mine) > 1 else 1)]
    writes: List[Optional[Future]] = [None] * len(buffers)
    current, rows, kept, skipped, slot = None, 0, [], [], 0

    def write(k: int, array: np.ndarray, kept: List[int], skipped: List[List[str]]) -> None:
        atomic_write(folder / f"{_shard_name(k)}.npy", lambda handle: np.save(handle, array))
        atomic_write_json(folder / f"{_shard_name(k)}.json",
                          {"key": key, "shard_size": shard_size, "first": k * shard_size, "kept": kept,
                           "skipped": skipped, "sha256": array_digest(array)})

    with ThreadPoolExecutor(max_workers=1) as writer:
        for first, good, features, bad in transformed_batches([it.path for it in items], config, strict, batches,
                                                              workers):
            k = first // shard_size
            if k != current:                       # a shard begins: its buffer's previous shard must be on disk
                if writes[slot] is not None:
                    writes[slot].result()          # (or its error is raised)
                current, rows, kept, skipped = k, 0, [], []
            skipped += [[str(items[i].path), reason] for i, reason in bad]
            if good:
                buffers[slot][rows:rows + len(good)] = features.numpy()
                rows += len(good)
                kept += good
            if bar is not None:
                bar.update(len(good) + len(bad))
            if first + len(good) + len(bad) == min((k + 1) * shard_size, len(items)):      # the shard's last batch
                writes[slot] = writer.submit(write, k, buffers[slot][:rows], kept, skipped)
                slot = (slot + 1) % len(buffers)
            pause.point("features")
        for pending in writes:
            if pending is not None:
                pending.result()
    if own_bar:
        bar.close()


def index_key(index: Path) -> Optional[str]:
    try:
        obj = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    return obj.get("key") if obj.get("format") == STORE_FORMAT and obj.get("version") == STORE_VERSION else None


def write_index(items: Sequence[Item], config: FeatureConfig, folder: Union[str, Path], strict: bool = False,
                shard_size: int = DEFAULT_SHARD_SIZE, key: Optional[str] = None) -> Path:
    """Gather the finished shards' records into ``index.json`` (the store is complete once it exists).
    FileFormatError naming the first shard that is missing or made for other files."""
    folder = Path(folder)
    key = key or store_key(items, config, strict)
    rows, shards, skipped = [], [], []
    for k in range(-(-len(items) // shard_size)):
        if not _shard_done(folder, k, key, shard_size):
            raise FileFormatError(f"{folder / _shard_name(k)}.npy: shard missing or made for other files or "
                                  "settings; build the store again")
        meta = read_record(folder / f"{_shard_name(k)}.json")
        shards.append({"file": f"{_shard_name(k)}.npy", "rows": len(meta["kept"])}
                      | ({"sha256": meta["sha256"]} if meta.get("sha256") else {}))
        rows += [[str(items[i].path), items[i].label, items[i].split, items[i].speaker] for i in meta["kept"]]
        skipped += meta["skipped"]
    index = folder / INDEX_NAME
    atomic_write_json(index, {"format": STORE_FORMAT, "version": STORE_VERSION, "key": key,
                              "features": config.to_dict(), "strict": strict, "shard_size": shard_size,
                              "num_files": len(items), "shards": shards, "columns": ["path", "label", "split", "speaker"],
                              "rows": rows, "skipped": skipped})
    return index


class FeatureStore:
    """A finished store, opened read-only: ``rows`` (path, label, split, speaker) per clip, ``skipped``
    [(path, reason)], ``config``; :meth:`features` reads clips on demand through memory maps."""

    def __init__(self, folder: Union[str, Path], expected_key: Optional[str] = None) -> None:
        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        try:
            obj = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{index}: not a readable feature store index ({exc})") from None
        if not isinstance(obj, dict) or obj.get("format") != STORE_FORMAT or obj.get("version") != STORE_VERSION:
            found = obj if isinstance(obj, dict) else {}
            raise FileFormatError(f"{index}: not a {STORE_FORMAT} index of version {STORE_VERSION} "
                                  f"(format {found.get('format')!r}, version {found.get('version')!r})")
        check_store_index(index, obj)
        if expected_key is not None and obj["key"] != expected_key:
            raise FileFormatError(f"{index}: made for other files or feature settings")
        self.key: str = obj["key"]
        self.config = FeatureConfig.from_dict(obj["features"])
        self.rows: List[List[Optional[str]]] = obj["rows"]
        self.skipped: List[Tuple[str, str]] = [tuple(s) for s in obj["skipped"]]
        self.num_files: int = obj["num_files"]
        if self.config.fixed_length is None:
            raise FileFormatError(f"{index}: field 'features' has no fixed_length; a store holds clips of one length")
        self.clip_shape = (3, self.config.n_mfcc, self.config.n_frames(self.config.fixed_length))
        self._shards = []
        for shard in obj["shards"]:
            path = self.folder / shard["file"]
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False) if shard["rows"] else None
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{path}: unreadable shard ({' '.join(str(exc).split())})") from None
            if array is not None and (array.dtype != np.float32 or array.shape != (shard["rows"],) + self.clip_shape):
                raise FileFormatError(f"{path}: holds {array.shape} {array.dtype}, the index says {shard['rows']} "
                                      f"float32 clips of {self.clip_shape}")
            self._shards.append(array)
        self._digests = [shard.get("sha256") for shard in obj["shards"]]
        self._files = [self.folder / shard["file"] for shard in obj["shards"]]
        self._verified = [array is None for array in self._shards]     # each shard checked on its first read
        counts = [0] + [s["rows"] for s in obj["shards"]]
        self.offsets = np.cumsum(counts)            # shard k holds rows offsets[k] .. offsets[k+1] - 1

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.clip_shape)) * 4

    def column(self, name: str) -> list:
        j = ["path", "label", "split", "speaker"].index(name)
        return [r[j] for r in self.rows]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Clips ``rows`` (n,) int64 -> (n, 3, n_mfcc, T) float32, a fresh array (only those rows are read)."""
        out = np.empty((len(rows),) + self.clip_shape, dtype=np.float32)
        if len(rows) == 0:
            return out
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"row out of range for a store of {len(self)} clips")
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(shard):
            if not self._verified[k]:
                verify_shard(self._files[k], self._shards[k], self._digests[k])
                self._verified[k] = True
            where = np.nonzero(shard == k)[0]
            local = rows[where] - self.offsets[k]
            order = np.argsort(local, kind="stable")            # read each shard front to back
            out[where[order]] = self._shards[k][local[order]]
        return out

    def features(self) -> "StoredFeatures":
        """Every clip, as a lazily read (N, 3, n_mfcc, T) float32 view."""
        return StoredFeatures(self, torch.arange(len(self)))
