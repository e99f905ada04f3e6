"""Labelled audio sources -> FD-MFCC features: :func:`load_feature_split` (through a sharded feature store,
in memory or on disk), :func:`prepare_store` and :func:`extract_features` (files -> one tensor)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..config import FeatureConfig
from ..errors import ParameterError, ResourceError
from ..resources import DEFAULT_BATCH, DEFAULT_SHARD_SIZE, features_in_memory, plan_features, process_rss_bytes
from .sources import labelled_items
from .split import FeatureNorm, FeatureSplit, carve_validation, make_split
from .store import build_store, store_key, transformed_batches

_BATCH = 256


def extract_features(paths: Sequence[Union[str, Path]], config: FeatureConfig, strict: bool = False,
                     progress: Any = True, batch_size: int = DEFAULT_BATCH) -> Tuple[Tensor, List[int], List[Tuple[str, str]]]:
    """FD-MFCC of audio files, batched into one tensor.

    Each file is loaded with :func:`ddfad_fast.load_audio` (mono, resampled to ``config.sample_rate``)
    and padded / cropped to ``config.fixed_length``.

    Parameters
    ----------
    paths : sequence of str or Path
        The files.
    config : FeatureConfig
        Feature parameters; ``fixed_length`` must be set.
    strict : bool
        A file that cannot be used (unreadable, empty, non-finite samples) raises instead of being
        skipped, and a file at another sample rate is refused rather than resampled.
    progress : bool or tqdm
        True for a progress bar, or a bar to advance (one step per file).
    batch_size : int
        Clips per FD-MFCC call.

    Returns
    -------
    (Tensor, list of int, list of (str, str))
        Features (N, 3, n_mfcc, T) float32, the indices of ``paths`` kept, and (file, reason) pairs skipped.

    Raises
    ------
    ParameterError
        No fixed length.
    AudioFileError
        With ``strict``: the first unusable file, named.
    """
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


def load_feature_split(source: Union[str, Path], feature_config: Optional[FeatureConfig] = None,
                       cache_dir: Optional[Path] = None, strict: bool = False, progress: bool = True,
                       max_per_class: Optional[int] = None, val_fraction: float = 0.0,
                       in_memory: Optional[bool] = None, workers: Optional[int] = None,
                       max_memory_gb: Optional[float] = None,
                       reserve: Optional[Callable[[Tuple[int, int, int], int], int]] = None,
                       standardize: Union[bool, "FeatureNorm"] = False) -> FeatureSplit:
    """FD-MFCC features and labels of a labelled audio source, split train / test (and validation).

    Features go through a sharded feature store (:mod:`ddfad_fast.data.store`) in ``cache_dir``, in a
    folder named by a hash of the FeatureConfig, ``strict`` and the file list (paths, labels, splits,
    speakers, sizes, mtimes): a store of another config or file list is never used, an unfinished one is
    resumed shard by shard. Under torchrun the ranks compute disjoint shards. Features read into memory
    take their memory once: each split is read from its store view after the validation split is carved.

    Parameters
    ----------
    source : str or Path
        A folder or CSV manifest.
    feature_config : FeatureConfig, optional
        Default the FSDD preset.
    cache_dir : Path, optional
        Folder of the feature stores; None: a temporary store, read into memory.
    strict : bool
        An unusable file raises AudioFileError instead of being skipped.
    progress : bool
        Show progress bars.
    max_per_class : int, optional
        Keep at most that many files per class in each split (sorted order).
    val_fraction : float
        > 0 carves a validation split from the training clips (:func:`carve_validation`).
    in_memory : bool, optional
        True reads the features into tensors; False leaves them on disk as
        :class:`ddfad_fast.data.views.StoredFeatures` views (read batch by batch, memory independent of the
        corpus); None reads them into memory when they take at most ``IN_MEMORY_LIMIT_GB``.
    workers : int, optional
        Decoding processes (default :func:`ddfad_fast.data.store.default_workers`).
    max_memory_gb : float, optional
        The feature computation is planned to fit it (:func:`ddfad_fast.data.store.plan_features`) and, with
        ``in_memory`` None, the features are read into memory only when they fit beside ``reserve``.
    reserve : callable, optional
        ``reserve(in_shape, num_classes)``: bytes the caller's training needs
        (:func:`ddfad_fast.train.memory.training_reserve`).
    standardize : bool or FeatureNorm
        True fits a :class:`FeatureNorm` on the training clips and standardises every split with it; a
        FeatureNorm standardises with that one (in place or as a view: no second copy).

    Returns
    -------
    FeatureSplit
        Features (N, 3, n_mfcc, T), labels, class names, skipped files, and the validation split if carved.

    Raises
    ------
    ParameterError
        No class has training clips.
    AudioFileError
        With ``strict``: the first unusable file.
    ResourceError
        Even the training reserve does not fit ``max_memory_gb``.
    """
    config = (feature_config or FeatureConfig()).validate()
    if cache_dir is None:
        items, skipped = labelled_items(source, config, max_per_class)
        shard_size, batch_size, workers = plan_features(config, max_memory_gb, workers)
        with tempfile.TemporaryDirectory() as tmp:
            store = build_store(items, config, tmp, strict=strict, progress=progress, workers=workers, local=True,
                                shard_size=shard_size, batch_size=batch_size)
            need = reserve(store.clip_shape, len(set(store.column("label")))) if reserve is not None else 0
            if max_memory_gb is not None and not features_in_memory(store.nbytes, need, max_memory_gb,
                                                                    process_rss_bytes()):
                raise ResourceError(f"the features ({store.nbytes / 2 ** 30:.2f} GB) do not fit in memory beside "
                                    f"training under --max-memory {max_memory_gb:g} GB; pass --cache DIR so that "
                                    "training reads them from their store on disk")
            return _finish_split(_split_from_store(store, skipped), val_fraction, True, standardize)
    else:
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


def prepare_store(source: Union[str, Path], config: FeatureConfig, cache_dir: Union[str, Path], strict: bool = False,
                  progress: bool = True, max_per_class: Optional[int] = None, workers: Optional[int] = None,
                  shard_size: Optional[int] = None, batch_size: Optional[int] = None):
    """The feature store of a labelled source, built or resumed when needed.

    The folder is ``cache_dir/store_<hash>``, the hash of :func:`ddfad_fast.data.store.store_key`; under
    torchrun the ranks compute disjoint shards and rank 0 writes the index.

    Parameters
    ----------
    source : str or Path
        A folder or CSV manifest.
    config : FeatureConfig
        Feature parameters.
    cache_dir : str or Path
        Parent folder of the stores.
    strict, progress, max_per_class, workers
        As for :func:`load_feature_split`.
    shard_size, batch_size : int, optional
        Clips per shard and per FD-MFCC call.

    Returns
    -------
    (FeatureStore, list of (str, str))
        The opened store and the files skipped while discovering the source.
    """
    config = config.validate()
    items, skipped = labelled_items(source, config, max_per_class)
    key = store_key(items, config, strict)
    store = build_store(items, config, Path(cache_dir) / f"store_{key[:20]}", strict=strict, progress=progress,
                        workers=workers, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                        batch_size=batch_size or DEFAULT_BATCH, key=key)
    return store, skipped


def _split_from_store(store, skipped: List[Tuple[str, str]]) -> FeatureSplit:
    return make_split(store.features(), store.column("label"), store.column("split"), store.config,
                       skipped + list(store.skipped), store.column("speaker"), store.column("path"))
