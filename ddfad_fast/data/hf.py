"""Hugging Face ``datasets`` in and out (the optional extra ``pip install "ddfad_fast[hf]"``).

In: a ``Dataset``, ``DatasetDict`` or ``IterableDataset`` / ``IterableDatasetDict`` (streamed, never held in
memory) with an Audio column, a dataset saved with ``save_to_disk`` (its folder), or one already in the local
cache (``hf:NAME`` or ``hf:NAME:CONFIG``: ``datasets.load_dataset`` with the cache only, no download).
:func:`hf_examples` turns it into labelled :class:`~ddfad_fast.data.spool.Example` records:

* the audio column (default: the one whose feature is ``Audio``, else ``audio``) is read undecoded
  (``Audio(decode=False)``: the file bytes as stored, decoded later by soundfile like any file). Recent
  ``datasets`` decode Audio through torchcodec, which is not needed here and is not installed with this
  package; rows that hold decoded ``{"array", "sampling_rate"}`` dicts or plain file paths are read too;
* the label column (default ``label``, else the only ``ClassLabel`` column): ``ClassLabel`` values become
  their names; rows whose label is missing or negative (unlabelled) are dropped;
* splits: ``train`` -> train, ``test`` -> test, ``validation`` / ``valid`` / ``dev`` -> train (the pipeline
  carves its own validation split from the training clips, stratified); other split names are refused.
  A single dataset takes a ``split`` column when it has one, else the seeded per-class split of a folder;
* a ``speaker`` column (or ``speaker_id`` / ``client_id``) stratifies the validation split as FSDD's names do.

Out: :func:`to_hf_dataset` builds a ``datasets.Dataset`` of clips (audio column of WAV bytes, ``label`` as a
``ClassLabel``, ``soft_label_logits`` when there are soft labels) that ``save_to_disk`` writes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ParameterError
from .spool import Example

SPLIT_MAP = {"train": "train", "test": "test", "validation": "train", "valid": "train", "dev": "train"}
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
HF_PREFIX = "hf:"


def require_datasets():
    """The ``datasets`` module, or a ParameterError saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise ParameterError('Hugging Face datasets need the optional dependency: pip install "ddfad_fast[hf]"') from None
    return datasets


def is_hf_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a datasets Dataset / DatasetDict / IterableDataset / IterableDatasetDict."""
    return type(obj).__module__.startswith("datasets.") and type(obj).__name__ in (
        "Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")


def is_saved_dataset(path: Any) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    try:
        folder = Path(path)
        return folder.is_dir() and any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))
    except TypeError:
        return False


def open_hf(spec: Any):
    """A dataset from ``spec``: a datasets object (returned as is), a ``save_to_disk`` folder, or ``hf:NAME[:CONFIG]``
    (from the local cache only). ParameterError when it is none of these or cannot be opened."""
    if is_hf_dataset(spec):
        return spec
    datasets = require_datasets()
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        name, _, config = spec[len(HF_PREFIX):].partition(":")
        return _load_cached(datasets, spec, name, config or None)
    if is_saved_dataset(spec):
        try:
            return datasets.load_from_disk(str(spec))
        except Exception as exc:
            raise ParameterError(f"{spec}: not a readable saved dataset ({exc})") from None
    raise ParameterError(f"{spec}: not a Hugging Face dataset (a save_to_disk folder or hf:NAME)")


def _load_cached(datasets, spec: str, name: str, config: Optional[str]):
    """``load_dataset(name, config)`` from the local cache only: the offline switches of ``datasets`` and
    ``huggingface_hub`` are set for the call (and restored), so nothing is downloaded or even looked up."""
    import huggingface_hub.constants as hub
    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(name, config)
    except Exception as exc:     # no cached copy, an unknown name, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ParameterError(f"{spec}: not found in the local Hugging Face cache ({type(exc).__name__}: {first})") from None
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _pick_column(features, wanted: Optional[str], kind: str, default: str, where: str) -> str:
    datasets = require_datasets()
    cls = {"audio": datasets.Audio, "label": datasets.ClassLabel}[kind]
    names = list(features)
    if wanted is not None:
        if wanted not in names:
            raise ParameterError(f"{where}: no column {wanted!r} (columns: {', '.join(names)})")
        return wanted
    if default in names:
        return default
    typed = [n for n in names if isinstance(features[n], cls)]
    if len(typed) == 1:
        return typed[0]
    raise ParameterError(f"{where}: which column holds the {kind}? pass {kind}_column= (columns: {', '.join(names)})")


def _audio_of(value: Any, where: str) -> Tuple[Any, Optional[int], Optional[str]]:
    """(audio for an Example, sample rate or None, suffix or None) of one row's audio cell."""
    if isinstance(value, dict):
        if value.get("bytes"):
            path = value.get("path") or ""
            return value["bytes"], None, Path(path).suffix.lstrip(".") or None
        if value.get("array") is not None:
            return np.asarray(value["array"]), value.get("sampling_rate"), None
        if value.get("path"):
            return value["path"], None, None
    elif isinstance(value, (str, bytes)):
        return value, None, None
    raise ParameterError(f"{where}: the audio cell holds neither bytes, an array nor a path ({type(value).__name__})")


def _split_examples(ds, split: Optional[str], label_column: Optional[str], audio_column: Optional[str],
                    speaker_column: Optional[str], where: str) -> Iterator[Example]:
    datasets = require_datasets()
    features = ds.features
    if features is None:            # an IterableDataset whose features are not known before reading
        raise ParameterError(f"{where}: the dataset does not declare its features; cast its audio column to "
                             "datasets.Audio() first")
    audio_col = _pick_column(features, audio_column, "audio", "audio", where)
    label_col = _pick_column(features, label_column, "label", "label", where)
    speaker_col = speaker_column or next((c for c in SPEAKER_COLUMNS if c in features), None)
    if speaker_col is not None and speaker_col not in features:
        raise ParameterError(f"{where}: no column {speaker_col!r}")
    if isinstance(features[audio_col], datasets.Audio):
        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))
    names = features[label_col].names if isinstance(features[label_col], datasets.ClassLabel) else None
    keep = [c for c in (audio_col, label_col, speaker_col, "split") if c is not None and c in features]
    if hasattr(ds, "select_columns"):
        ds = ds.select_columns(keep)
    for k, row in enumerate(ds):
        label = row[label_col]
        if label is None or (names is not None and int(label) < 0):
            continue
        text = names[int(label)] if names is not None else str(label)
        audio, rate, suffix = _audio_of(row[audio_col], f"{where} row {k}")
        row_split = split if split is not None else (row.get("split") or None)
        if row_split is not None:
            row_split = SPLIT_MAP.get(str(row_split).lower(), row_split)
        speaker = row.get(speaker_col) if speaker_col else None
        yield Example(audio, text, sample_rate=rate, split=row_split,
                      speaker=None if speaker is None else str(speaker), suffix=suffix)


def hf_examples(data: Any, label_column: Optional[str] = None, audio_column: Optional[str] = None,
                speaker_column: Optional[str] = None) -> Tuple[Iterator[Example], Optional[int]]:
    """Labelled examples of a Hugging Face dataset (see the module docstring) and their number when known
    (None for a stream)."""
    ds = open_hf(data)
    where = str(data) if isinstance(data, str) else type(ds).__name__
    if hasattr(ds, "keys") and not hasattr(ds, "features"):          # DatasetDict / IterableDatasetDict
        unknown = [name for name in ds.keys() if name.lower() not in SPLIT_MAP]
        if unknown:
            raise ParameterError(f"{where}: split(s) {unknown} are none of {sorted(SPLIT_MAP)}; select the splits "
                                 "to use first (e.g. DatasetDict({'train': ..., 'test': ...}))")
        parts = [(SPLIT_MAP[name.lower()], ds[name], f"{where}[{name}]") for name in ds.keys()]
    else:
        parts = [(None, ds, where)]
    sizes = [getattr(part, "num_rows", None) for _, part, _ in parts]
    total = None if any(n is None for n in sizes) else sum(sizes)

    def generate() -> Iterator[Example]:
        for split, part, name in parts:
            yield from _split_examples(part, split, label_column, audio_column, speaker_column, name)
    return generate(), total


def to_hf_dataset(waves: Sequence[np.ndarray], sample_rate: int, labels: Sequence[int], class_names: Sequence[str],
                  soft_label_logits: Optional[np.ndarray] = None, names: Optional[Sequence[str]] = None):
    """A ``datasets.Dataset`` of clips: ``audio`` (16-bit PCM WAV bytes, ``Audio(sampling_rate=sample_rate)``
    stored undecoded so it reads back without torchcodec; cast to ``Audio()`` to decode), ``label``
    (``ClassLabel(names=class_names)``) and, when given, ``soft_label_logits`` (C floats per clip).
    ``waves``: N clips, (L,) float in [-1, 1]. ``names``: file names stored with the bytes."""
    import soundfile

    datasets = require_datasets()
    encoded: List[dict] = []
    for k, wave in enumerate(waves):
        buffer = io.BytesIO()
        soundfile.write(buffer, np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0), int(sample_rate),
                        format="WAV", subtype="PCM_16")
        encoded.append({"bytes": buffer.getvalue(), "path": names[k] if names is not None else f"{k:05d}.wav"})
    columns = {"audio": encoded, "label": [int(c) for c in labels]}
    # the audio column is built as the struct an Audio column stores, then cast: datasets 5 encodes Audio values
    # given to from_dict through torchcodec, a casting of the struct needs nothing
    features = {"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "label": datasets.ClassLabel(names=list(class_names))}
    if soft_label_logits is not None:
        logits = np.asarray(soft_label_logits, dtype=np.float32)
        columns["soft_label_logits"] = logits.tolist()
        features["soft_label_logits"] = datasets.Sequence(datasets.Value("float32"), length=logits.shape[1])
    table = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return table.cast_column("audio", datasets.Audio(sampling_rate=int(sample_rate), decode=False))
