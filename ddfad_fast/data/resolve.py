"""Any data the package takes -> a folder or CSV manifest the pipeline reads (:func:`resolve_source`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..errors import ParameterError
from .hf import HF_PREFIX, hf_examples, is_hf_dataset, is_saved_dataset
from .spool import iterable_examples, spool_examples

DataLike = Any      # folder, CSV, datasets object, "hf:NAME", or an iterable of (waveform, sample_rate, label)


def is_file_source(data: Any) -> bool:
    """Whether ``data`` names a folder or CSV manifest (read in place, not spooled)."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    return not (str(data).startswith(HF_PREFIX) or is_saved_dataset(data))


def resolve_source(data: DataLike, cache_dir: Union[str, Path], progress: bool = True,
                   label_column: Optional[str] = None, audio_column: Optional[str] = None,
                   speaker_column: Optional[str] = None) -> str:
    """The folder or CSV manifest the pipeline reads for ``data``.

    Parameters
    ----------
    data : str, Path, datasets.Dataset, DatasetDict, IterableDataset or iterable
        A folder or CSV (returned as given); a Hugging Face dataset (in memory, saved, cached or
        streamed) or an iterable of ``(waveform, sample_rate, label[, split])``, written into
        ``cache_dir`` as clips and a manifest (:func:`ddfad_fast.data.spool.spool_examples`).
    cache_dir : str or Path
        Where written clips go.
    progress : bool
        Show a progress bar while writing.
    label_column, audio_column, speaker_column : str, optional
        Columns of a Hugging Face dataset (default: found by name and type, :mod:`ddfad_fast.data.hf`).

    Returns
    -------
    str
        Path of the folder or manifest.
    """
    if is_file_source(data):
        return str(data)
    if isinstance(data, (str, os.PathLike)) or is_hf_dataset(data):
        examples, total = hf_examples(data, label_column=label_column, audio_column=audio_column,
                                      speaker_column=speaker_column)
    elif isinstance(data, (bytes, dict, torch.Tensor)) or not hasattr(data, "__iter__"):
        raise ParameterError(f"data must be a folder, a CSV manifest, a Hugging Face dataset or an iterable of "
                             f"(waveform, sample_rate, label); got {type(data).__name__}")
    else:
        examples, total = iterable_examples(data), (len(data) if hasattr(data, "__len__") else None)
    return str(spool_examples(examples, cache_dir, total=total, progress=progress, desc="source"))
