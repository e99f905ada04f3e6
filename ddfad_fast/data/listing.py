"""Listing the labelled files of a folder or a CSV manifest, whatever they hold: every entry is either
used or listed as skipped with its reason, never dropped in silence and never opened when it is not a
regular file (a FIFO would block the decoder).

* a folder of FSDD-named files (``{label}_{speaker}_{index}.wav``) is recognised by those names, even
  beside sub-folders (which are then listed as skipped); otherwise each sub-folder is a class;
* a CSV manifest may start with a UTF-8 (or UTF-16) byte-order mark; one that is not UTF-8 is read as
  Latin-1 with a warning, and a path is then matched by its raw bytes when the Latin-1 name does not exist;
* the same file listed twice (the same path, a symbolic link to it) is kept once; listed with different
  labels or splits it is skipped every time, so one clip can never sit in both train and test.

Rows are ``(path, label, split, speaker)`` tuples; :mod:`ddfad_fast.data.sources` makes them Items.
"""
from __future__ import annotations

import csv
import errno
import io
import logging
import os
import stat
from pathlib import Path
from typing import Dict, List, Optional, Pattern, Sequence, Tuple

from ..errors import ParameterError

log = logging.getLogger(__name__)
Row = Tuple[Path, str, Optional[str], Optional[str]]       # path, label, split, speaker
Skipped = List[Tuple[str, str]]


def not_a_regular_file(path) -> Optional[str]:
    """Why ``path`` cannot be decoded as an audio file without opening it (None: a regular file)."""
    try:
        st = os.stat(path)
    except ValueError:
        return "the path holds a NUL character"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            return "broken symbolic link (it points to a missing file)"
        if exc.errno == errno.ENOENT:
            return "no such file"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an audio file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def _has_suffix(path: Path, extensions: Sequence[str]) -> bool:
    return path.suffix.lower() in extensions


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def folder_rows(source: Path, pattern: Pattern, extensions: Sequence[str]) -> Tuple[List[Row], Skipped]:
    """The labelled files of a folder: FSDD names at its top level, else one sub-folder per class."""
    entries = sorted(source.iterdir())
    top = [e for e in entries if _has_suffix(e, extensions) and not e.is_dir()]
    folders = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    fsdd = bool(top) and (not folders or any(pattern.match(e.name) for e in top))
    rows: List[Row] = []
    skipped: Skipped = []
    if fsdd:
        for f in folders:
            skipped.append((str(f), "a folder beside FSDD-named files: not read (classes come from the file names)"))
        for f in top:
            reason = not_a_regular_file(f)
            m = pattern.match(f.name)
            if reason is None and m is None:
                reason = "name does not match {label}_{speaker}_{index}.wav (or another audio suffix)"
            if reason is not None:
                skipped.append((str(f), reason))
                continue
            rows.append((f, m.group("label"), "test" if int(m.group("index")) <= 4 else "train", m.group("speaker")))
        return _without_duplicates(rows, skipped, [str(r[0]) for r in rows])
    for f in top:
        skipped.append((str(f), "an audio file beside the class folders: not in a class"))
    for d in folders:
        for f in sorted(d.iterdir()):
            if not _has_suffix(f, extensions):
                continue
            reason = not_a_regular_file(f)
            if reason is not None:
                skipped.append((str(f), reason))
            else:
                rows.append((f, d.name, None, None))
    return _without_duplicates(rows, skipped, [str(r[0]) for r in rows])


def _decode(manifest: Path, raw: bytes) -> Tuple[str, bool]:
    """The manifest's text (a byte-order mark removed) and whether it was read as Latin-1."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), False
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig"), False
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        log.warning("%s is not UTF-8 (byte 0x%02x on line %d); reading it as Latin-1", manifest, raw[exc.start], line)
        return raw.decode("latin-1"), True


def manifest_rows(manifest: Path) -> Tuple[List[Row], Skipped]:
    """The rows ``path,label[,split[,speaker]]`` of a CSV manifest (a header row is allowed); relative paths
    are relative to the manifest's folder."""
    text, latin1 = _decode(manifest, manifest.read_bytes())
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ParameterError(f"{manifest}: not a readable CSV manifest ({exc})") from None
    start = 1
    if table and [c.strip().lower() for c in table[0][:2]] == ["path", "label"]:
        table, start = table[1:], 2
    rows: List[Row] = []
    where: List[str] = []
    skipped: Skipped = []
    for line, row in enumerate(table, start=start):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        if len(row) < 2 or not row[0] or not row[1]:
            skipped.append((f"{manifest}:{line}", "row needs path,label[,split]"))
            continue
        split = row[2].lower() if len(row) > 2 and row[2] else None
        if split not in (None, "train", "test"):
            skipped.append((row[0], f"split {row[2]!r} is not 'train' or 'test'"))
            continue
        path = Path(row[0]) if Path(row[0]).is_absolute() else manifest.parent / row[0]
        if latin1 and not os.path.lexists(path):            # the name's own bytes, when they were not UTF-8 either
            raw_name = Path(os.fsdecode(str(path).encode("latin-1")))
            path = raw_name if os.path.lexists(raw_name) else path
        reason = not_a_regular_file(path)
        if reason is not None and reason != "no such file":     # a missing file is reported by the decoder
            skipped.append((str(path), reason))
            continue
        rows.append((path, row[1], split, row[3] if len(row) > 3 and row[3] else None))
        where.append(f"line {line}")
    return _without_duplicates(rows, skipped, where)


def _without_duplicates(rows: List[Row], skipped: Skipped, where: List[str]) -> Tuple[List[Row], Skipped]:
    """One row per file (symbolic links resolved): repeats of a row are dropped, a file listed with different
    labels, splits or speakers is dropped every time; each is listed as skipped with the reason."""
    groups: Dict[str, List[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(_real(row[0]), []).append(i)
    drop: Dict[int, str] = {}
    for members in groups.values():
        if len(members) == 1:
            continue
        places = ", ".join(where[i] for i in members)
        if len({rows[i][1:] for i in members}) == 1:
            for i in members[1:]:
                drop[i] = f"the same file as {where[members[0]]}: listed twice, used once"
        else:
            for i in members:
                drop[i] = (f"one file listed with different labels or splits ({places}): not used, since which is "
                           "right is unknown")
    kept = [row for i, row in enumerate(rows) if i not in drop]
    skipped = skipped + [(str(rows[i][0]), reason) for i, reason in sorted(drop.items())]
    return kept, skipped
