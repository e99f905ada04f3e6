"""Integrity of a feature store's shards: a SHA-256 of every shard's clips, written beside it when it is
made and verified, with the finiteness of every value, the first time a process reads the shard; and
the shard records (``shard_NNNNN.json``) read defensively.

A shard changed after it was written (a flipped byte, NaN bytes written into it, a copy cut short) is
refused with one line naming the shard file, before any of its clips reaches training.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import FileFormatError

CHUNK_BYTES = 64 * 2 ** 20          # read (and hash) a shard 64 MiB at a time


def _blocks(array: np.ndarray):
    rows = max(1, CHUNK_BYTES // max(1, array[:1].nbytes))
    for start in range(0, len(array), rows):
        yield np.ascontiguousarray(array[start:start + rows])


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's values (C order, its own dtype), read in chunks (a memory map is not read whole)."""
    digest = hashlib.sha256()
    for block in _blocks(array):
        digest.update(memoryview(block).cast("B"))
    return digest.hexdigest()


def verify_shard(path: Path, array: np.ndarray, expected: Optional[str]) -> None:
    """One pass over a shard's clips: every value finite, and their SHA-256 ``expected`` (None: a store of an
    earlier release, finiteness only). FileFormatError naming ``path`` otherwise."""
    digest = hashlib.sha256() if expected is not None else None
    for block in _blocks(array):
        if not np.isfinite(block).all():
            raise FileFormatError(f"{path}: the shard holds NaN or infinite features (the file was changed or "
                                  "damaged after it was written); build the store again (delete the folder)")
        if digest is not None:
            digest.update(memoryview(block).cast("B"))
    if digest is not None and digest.hexdigest() != expected:
        raise FileFormatError(f"{path}: the shard's checksum does not match the one recorded when it was written "
                              "(the file was changed or damaged); build the store again (delete the folder)")


def read_record(path: Path) -> Optional[dict]:
    """A shard's record (``shard_NNNNN.json``: key, shard_size, first, kept, skipped), None when it is missing,
    unreadable or malformed (the shard is then computed again)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    kept, skipped = obj.get("kept"), obj.get("skipped")
    if not isinstance(kept, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in kept):
        return None
    if not isinstance(skipped, list) or not all(isinstance(s, list) and len(s) == 2 for s in skipped):
        return None
    if not isinstance(obj.get("key"), str) or not isinstance(obj.get("shard_size"), int):
        return None
    digest = obj.get("sha256")
    if digest is not None and not isinstance(digest, str):
        return None
    return obj
