"""Labelled audio in, FD-MFCC feature splits out.

* :mod:`~ddfad_fast.data.sources`: where the labelled clips are (FSDD-named folders, class sub-folders, CSV
  manifests) and the FSDD download;
* :mod:`~ddfad_fast.data.listing`: every entry of a folder or manifest used or listed as skipped;
* :mod:`~ddfad_fast.data.store`: the sharded, memory-mapped feature store (corpora larger than memory), its
  shards checked by :mod:`~ddfad_fast.data.shards` and read through :mod:`~ddfad_fast.data.views`;
* :mod:`~ddfad_fast.data.split`: train / validation / test splits, the standardisation, the data fingerprint;
* :mod:`~ddfad_fast.data.load`: sources -> feature splits through a store (:func:`load_feature_split`);
* :mod:`~ddfad_fast.data.scan`: a header scan of a source and the feature settings that fit it (:func:`choose_features`);
* :mod:`~ddfad_fast.data.hf`, :mod:`~ddfad_fast.data.spool`, :mod:`~ddfad_fast.data.resolve`: Hugging Face datasets
  and iterables of waveforms as sources (written once into a folder with a manifest), and datasets out.
"""
from __future__ import annotations

from .load import extract_features, load_feature_split, prepare_store
from .resolve import resolve_source
from .scan import ClipScan, FeatureChoice, choose_features, scan_clips, scan_source
from .sources import AUDIO_EXTENSIONS, Item, discover, extract_recordings, fetch_fsdd, labelled_items
from .split import FeatureNorm, FeatureSplit, carve_validation, data_fingerprint, take_rows
from .store import FeatureStore, StoredFeatures, build_store
from .views import features_on, first_channels, in_memory

__all__ = ["AUDIO_EXTENSIONS", "ClipScan", "FeatureChoice", "choose_features", "resolve_source", "scan_clips",
           "scan_source", "FeatureNorm", "FeatureSplit", "FeatureStore", "Item", "StoredFeatures", "build_store",
           "carve_validation", "data_fingerprint", "discover", "extract_features", "extract_recordings", "features_on",
           "fetch_fsdd", "first_channels", "in_memory",
           "labelled_items", "load_feature_split", "prepare_store", "take_rows"]
