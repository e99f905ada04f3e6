"""The one place that turns text from outside (class labels, file stems of inputs) into file names.

A label comes from a CSV manifest, a folder name or a saved file, so it may hold anything: ``..``, ``/``, an
absolute path, NUL, control characters, bytes that are not UTF-8, 300 characters. :func:`file_stem` keeps
ASCII letters, digits, ``-`` and ``_`` (everything else becomes ``_``), never starts with a dot, and is at
most :data:`MAX_STEM` characters; :func:`unique_stems` makes the stems of several labels distinct even on a
case-insensitive file system, adding a short hash of the label where two would collide (``A`` and ``a``,
``a/b`` and ``a_b``) or where the stem had to be cut. A stem is never a path: it holds no separator.
"""
from __future__ import annotations

import hashlib
import re
from typing import Dict, Iterable, List, Sequence

MAX_STEM = 48                    # characters of a stem, before the hash and the file's own suffix
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def file_stem(text: str, fallback: str = "item") -> str:
    """``text`` as a safe file-name stem: ``[A-Za-z0-9_-]`` only, no leading ``-`` (read as an option by
    other tools) and at most :data:`MAX_STEM` characters; ``fallback`` when nothing is left. Distinct texts
    may give the same stem: :func:`unique_stems` resolves that."""
    stem = _UNSAFE.sub("_", str(text)).strip("_").lstrip("-")
    return stem[:MAX_STEM].rstrip("_") or fallback


def unique_stems(texts: Iterable[str], fallback: str = "item") -> Dict[str, str]:
    """A distinct stem for every distinct text: :func:`file_stem`, plus ``-<hash of the text>`` where the stem
    was cut or changed so much that nothing was left, or where stems would be equal ignoring case. The
    result does not depend on the order of ``texts``."""
    texts = sorted(set(map(str, texts)))
    stems = {t: file_stem(t, fallback) for t in texts}
    groups: Dict[str, List[str]] = {}
    for t, s in stems.items():
        groups.setdefault(s.casefold(), []).append(t)
    out = {}
    for t, s in stems.items():
        clipped = len(_UNSAFE.sub("_", t).strip("_")) > MAX_STEM or s == fallback != t
        out[t] = f"{s}-{_digest(t)}" if clipped or len(groups[s.casefold()]) > 1 else s
    seen: Dict[str, str] = {}
    for t in texts:                      # a hash collision (never seen) still cannot give two equal names
        key = out[t].casefold()
        if key in seen:
            out[t] = f"{out[t]}-{len(seen)}"
            key = out[t].casefold()
        seen[key] = t
    return out


def numbered_names(labels: Sequence[str], suffix: str = ".wav") -> List[str]:
    """``{stem}_{k:03d}{suffix}`` per label, ``k`` counting that label's earlier occurrences: the file names
    of a set of clips named after their classes (unique, never paths)."""
    stems = unique_stems(labels, fallback="class")
    counts: Dict[str, int] = {}
    names = []
    for label in labels:
        k = counts.get(label, 0)
        counts[label] = k + 1
        names.append(f"{stems[str(label)]}_{k:03d}{suffix}")
    return names


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one file name in a folder (no separator, not ``.``/``..``, no NUL)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
