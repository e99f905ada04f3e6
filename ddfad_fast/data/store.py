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

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..audio.files import RESAMPLER, load_audio
from ..config import FeatureConfig
from ..errors import AudioFileError, FileFormatError, ParameterError
from ..ops.features import fd_mfcc, fit_length
from ..io import atomic_write, atomic_write_json
from ..resources import DEFAULT_BATCH, DEFAULT_SHARD_SIZE, default_workers  # noqa: F401  (re-exported)

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
        h.update(f"{os.path.abspath(it.path)}|{it.label}|{it.split}|{it.speaker}|{stamp}\n".encode())
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
        try:
            wave, _ = load_audio(self.paths[i], sample_rate=self.config.sample_rate, mono=True,
                                 resample_ok=not self.strict)
        except AudioFileError as exc:
            if self.strict:
                raise
            return i, None, str(exc).split(": ", 1)[-1]
        return i, fit_length(wave.float(), self.config.fixed_length).contiguous(), None


def _shard_done(folder: Path, k: int, key: str, shard_size: int) -> bool:
    meta = folder / f"{_shard_name(k)}.json"
    if not meta.is_file() or not (folder / f"{_shard_name(k)}.npy").is_file():
        return False
    try:
        obj = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return obj.get("key") == key and obj.get("shard_size") == shard_size


def build_store(items: Sequence[Item], config: FeatureConfig, folder: Union[str, Path], strict: bool = False,
                shard_size: int = DEFAULT_SHARD_SIZE, workers: Optional[int] = None, batch_size: int = DEFAULT_BATCH,
                progress: Any = False, local: bool = False, key: Optional[str] = None) -> "FeatureStore":
    """Compute the FD-MFCC of ``items``' files into a store in ``folder``; returns it opened.

    Shards already finished for the same key and shard size are kept (resume). Under torchrun (a process
    group of K ranks, :mod:`ddfad_fast.distributed`) rank ``r`` computes shards ``r, r + K, ...``, and rank
    0 writes the index once every rank has finished; a rank that fails makes every rank raise. Unusable
    files are skipped with their reason (``strict``: the first raises AudioFileError naming it).
    ``workers``: DataLoader decoding processes (default :func:`default_workers`, shared among the ranks
    of a machine; 0 decodes in this process). ``local``: this process builds the whole store alone, even
    under torchrun (e.g. in a private temporary folder). ``key``: :func:`store_key` of these arguments when
    the caller has it (it stats every file).
    """
    from .. import distributed

    config = config.validate()
    if config.fixed_length is None:
        raise ParameterError("a feature store needs FeatureConfig.fixed_length (clips are stored at one length)")
    if shard_size < 1 or batch_size < 1:
        raise ParameterError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
    folder = Path(folder)
    key = key or store_key(items, config, strict)
    if index_key(folder / INDEX_NAME) == key:
        return FeatureStore(folder, key)
    rank, world = (0, 1) if local else (distributed.rank(), distributed.world_size())
    if workers is None:
        workers = max(0, default_workers() // world)
    def compute() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        _compute_shards(items, config, folder, key, shard_size, batch_size, strict, workers, progress, rank, world)

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
                           "skipped": skipped})

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
        meta = json.loads((folder / f"{_shard_name(k)}.json").read_text())
        shards.append({"file": f"{_shard_name(k)}.npy", "rows": len(meta["kept"])})
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
        if obj.get("format") != STORE_FORMAT or obj.get("version") != STORE_VERSION:
            raise FileFormatError(f"{index}: not a {STORE_FORMAT} index of version {STORE_VERSION} "
                                  f"(format {obj.get('format')!r}, version {obj.get('version')!r})")
        if expected_key is not None and obj["key"] != expected_key:
            raise FileFormatError(f"{index}: made for other files or feature settings")
        self.key: str = obj["key"]
        self.config = FeatureConfig.from_dict(obj["features"])
        self.rows: List[List[Optional[str]]] = obj["rows"]
        self.skipped: List[Tuple[str, str]] = [tuple(s) for s in obj["skipped"]]
        self.num_files: int = obj["num_files"]
        self._shards = []
        for shard in obj["shards"]:
            path = self.folder / shard["file"]
            try:
                array = np.load(path, mmap_mode="r") if shard["rows"] else None
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"{path}: unreadable shard ({exc})") from None
            if array is not None and (array.dtype != np.float32 or array.shape[0] != shard["rows"]):
                raise FileFormatError(f"{path}: holds {array.shape} {array.dtype}, the index says {shard['rows']} "
                                      "float32 clips")
            self._shards.append(array)
        counts = [0] + [s["rows"] for s in obj["shards"]]
        self.offsets = np.cumsum(counts)            # shard k holds rows offsets[k] .. offsets[k+1] - 1
        self.clip_shape = (3, self.config.n_mfcc, self.config.n_frames(self.config.fixed_length))

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
            where = np.nonzero(shard == k)[0]
            local = rows[where] - self.offsets[k]
            order = np.argsort(local, kind="stable")            # read each shard front to back
            out[where[order]] = self._shards[k][local[order]]
        return out

    def features(self) -> "StoredFeatures":
        """Every clip, as a lazily read (N, 3, n_mfcc, T) float32 view."""
        return StoredFeatures(self, torch.arange(len(self)))


class StoredFeatures:
    """Rows of a :class:`FeatureStore` that read like a (N, 3, n_mfcc, T) float32 tensor when indexed.

    Indexing with an int, a slice, an index tensor of any shape or a boolean mask returns a real tensor
    (standardised with ``norm`` when set, on ``device``) holding only those clips; :meth:`subset` returns
    another view. ``x[:, :k]`` keeps the first ``k`` channels. Training loops that draw batches by
    index read the store batch by batch.
    """

    def __init__(self, store: FeatureStore, rows: Tensor, norm=None, device: Union[str, torch.device] = "cpu",
                 channels: Optional[int] = None) -> None:
        self.store, self.rows, self.norm = store, rows.long().cpu(), norm
        self.device, self.channels = torch.device(device), channels

    def _like(self, **changes) -> "StoredFeatures":
        fields = {"rows": self.rows, "norm": self.norm, "device": self.device, "channels": self.channels}
        fields.update(changes)
        return StoredFeatures(self.store, **fields)

    # -- tensor-like attributes
    @property
    def shape(self) -> torch.Size:
        c, f, t = self.store.clip_shape
        return torch.Size((len(self.rows), self.channels or c, f, t))

    dtype = torch.float32

    def dim(self) -> int:
        return 4

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device=None, dtype=None, **_) -> "StoredFeatures":
        if dtype is not None and dtype != torch.float32:
            raise ParameterError(f"stored features are float32; .to({dtype}) needs them in memory (materialize())")
        if isinstance(device, torch.dtype):
            return self.to(dtype=device)
        return self if device is None else self._like(device=torch.device(device))

    def cpu(self) -> "StoredFeatures":
        return self.to("cpu")

    def float(self) -> "StoredFeatures":
        return self

    def detach(self) -> "StoredFeatures":
        return self

    def contiguous(self) -> "StoredFeatures":
        return self

    # -- reading
    def subset(self, index) -> "StoredFeatures":
        """The view of the rows ``index`` (index tensor, boolean mask or slice) of this one."""
        return self._like(rows=self.rows[index])

    def standardized_by(self, norm) -> "StoredFeatures":
        if self.norm is not None:
            raise ParameterError("these stored features are already standardised")
        return self._like(norm=norm)

    def __getitem__(self, key) -> Tensor:
        if isinstance(key, tuple):
            if len(key) == 2 and key[0] == slice(None) and isinstance(key[1], slice) and key[1].start in (None, 0) \
                    and key[1].step in (None, 1):
                return self._like(channels=min(key[1].stop or 3, self.channels or 3))
            raise ParameterError(f"stored features support x[index] and x[:, :k], not x[{key}]")
        if isinstance(key, int):
            return self._read(self.rows[key].reshape(1))[0]
        rows = self.rows[key] if not isinstance(key, Tensor) else self.rows[key.cpu()]
        return self._read(rows)

    def _read(self, rows: Tensor) -> Tensor:
        x = torch.from_numpy(self.store.gather(rows.reshape(-1).numpy()))
        if self.norm is not None:
            x = self.norm.apply(x)
        if self.channels is not None:
            x = x[:, :self.channels].contiguous()
        return x.reshape(tuple(rows.shape) + tuple(x.shape[1:])).to(self.device)

    def chunks(self, batch_size: int = 1024) -> Iterator[Tensor]:
        """The clips in order, ``batch_size`` at a time."""
        for i in range(0, len(self.rows), batch_size):
            yield self._read(self.rows[i:i + batch_size])

    def materialize(self, batch_size: int = 1024) -> Tensor:
        """All of these clips in one tensor (memory for all of them, once: filled chunk by chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.float32, device=self.device)
        for i in range(0, len(self.rows), batch_size):
            out[i:i + batch_size] = self._read(self.rows[i:i + batch_size])
        return out

    def __repr__(self) -> str:
        return (f"StoredFeatures(shape={tuple(self.shape)}, store={str(self.store.folder)!r}, "
                f"standardised={self.norm is not None}, device={self.device})")


def in_memory(x) -> Tensor:
    """``x`` as a tensor: a :class:`StoredFeatures` view is read whole, a tensor is returned as is."""
    return x.materialize() if isinstance(x, StoredFeatures) else x
