"""Output folders: who may write into them, what ``--overwrite`` may delete, and errors of writing.

* :func:`hold` takes an exclusive lock on an output folder (``fcntl.flock`` on the folder itself, so
  nothing is added to it; the kernel releases it when the process ends, however it ends). A second process
  is refused with :class:`FolderBusyError` naming the holder's pid. Re-entrant within one process.
* :func:`mark` writes the marker file :data:`MARKER` (``{"format": ..., "kind": ...}``) into a folder a
  command made; :func:`check_deletable` lets ``--overwrite`` delete a folder only when it holds the
  marker of that kind (or, for folders of earlier releases, the command's own main file), and never when
  the folder is, or holds, an input of the command. :func:`clear` then empties it, keeping the folder (and
  its lock).
* :func:`describe_os_error` / :func:`output_error`: an ``OSError`` of output (ENOSPC, EDQUOT, EFBIG,
  EACCES, EPERM, EROFS, ...) as one line naming the path and what to do.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Union

from .errors import FolderBusyError, OutputError, ParameterError

PathLike = Union[str, os.PathLike]
MARKER = ".ddfad-output.json"
log = logging.getLogger(__name__)
MARKER_FORMAT = "ddfad_fast.output"


# ----------------------------------------------------------------------------- errors of output

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space, then run the same command again (with --resume "
                  "where it has one: finished work is kept)",
    errno.EDQUOT: "disk quota exceeded: free some space or raise the quota, then run the same command again "
                  "(with --resume where it has one)",
    errno.EFBIG: "file too large for this process's file size limit (ulimit -f) or the file system: raise the "
                 "limit, then run the same command again (with --resume where it has one)",
    errno.EACCES: "permission denied: choose an output folder you can write to (an input you can read), or change "
                  "the permissions",
    errno.EPERM: "operation not permitted: choose an output folder you can write to, or change the permissions",
    errno.EROFS: "read-only file system: choose an output folder on a writable file system",
    errno.ENAMETOOLONG: "file name too long: choose a shorter output path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another output path",
    errno.EISDIR: "is a folder, where a file was expected: choose another output path",
    errno.ELOOP: "too many levels of symbolic links: choose another output path",
}


def describe_os_error(exc: OSError, path: Optional[PathLike] = None) -> str:
    """One line: the path (``exc.filename``, else ``path``), the problem and what to do."""
    where = exc.filename if exc.filename is not None else path
    advice = _ADVICE.get(exc.errno or -1)
    if advice is None:
        advice = exc.strerror or " ".join(str(exc).split())
    return f"{where}: {advice}" if where is not None else advice


def output_error(exc: OSError, path: PathLike) -> OutputError:
    """``exc`` (raised while writing ``path``) as an :class:`OutputError` with :func:`describe_os_error`'s line."""
    err = OutputError(describe_os_error(exc, path))
    err.errno, err.filename = exc.errno, exc.filename if exc.filename is not None else str(path)
    return err


# ----------------------------------------------------------------------------- what --overwrite may delete

def open_plain(path: PathLike) -> int:
    """``path`` opened for writing (created or truncated) as a plain file: a symbolic link in its place is
    removed, never followed (it could point outside the output folder)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_EXCL, 0o666)


def mark(folder: PathLike, kind: str) -> None:
    """Write the marker of a ``kind`` folder made by a ddfad command (rank 0 only, once per folder)."""
    path = Path(folder) / MARKER
    if marked_kind(folder) == kind:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(open_plain(path), "w") as handle:
            handle.write(json.dumps({"format": MARKER_FORMAT, "kind": kind}) + "\n")
    except OSError as exc:
        raise output_error(exc, path) from None


def marked_kind(folder: PathLike) -> Optional[str]:
    """The kind in ``folder``'s marker, None without a readable one (or with a link in its place)."""
    path = Path(folder) / MARKER
    try:
        obj = None if path.is_symlink() else json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj.get("kind") if isinstance(obj, dict) and obj.get("format") == MARKER_FORMAT else None


def _real(path: PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def within(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symbolic links resolved)."""
    p, f = _real(path), _real(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def check_deletable(folder: PathLike, kind: str, inputs: Iterable[PathLike] = (),
                    legacy: Union[Sequence[str], Callable[[Path], bool]] = (), flag: str = "--overwrite") -> None:
    """Refuse (ParameterError) to delete ``folder`` unless a ddfad command made it: its marker says ``kind``,
    or (a folder of an earlier release, without a marker) it holds one of the ``legacy`` files (or
    ``legacy(folder)`` is true). An input of the command (a data folder, a manifest, an audio file) that is
    ``folder`` or lies inside it is refused whatever the folder holds."""
    folder = Path(folder)
    for item in inputs:
        if item is not None and within(item, folder):
            raise ParameterError(f"{flag} would delete {folder}, which holds the input {item}; refusing (choose "
                                 "another output)")
    if folder.is_symlink():
        raise ParameterError(f"{folder} is a symbolic link; {flag} refuses to delete what it points to")
    found = marked_kind(folder)
    old = legacy(folder) if callable(legacy) else any((folder / name).exists() for name in legacy)
    if found == kind or (found is None and old):
        return
    what = f"a ddfad {found} folder, not a {kind} folder" if found else f"not a ddfad {kind} folder (no {MARKER})"
    raise ParameterError(f"{folder} is {what}; {flag} refuses to delete it (choose another output)")


def clear(folder: PathLike) -> None:
    """Delete everything inside ``folder`` (symbolic links themselves, never what they point to); the folder
    itself, and its lock, stay."""
    folder = Path(folder)
    for entry in list(folder.iterdir()):
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise output_error(exc, entry) from None


# ----------------------------------------------------------------------------- one writer per folder

_HELD: Dict[tuple, list] = {}     # (st_dev, st_ino) -> [fd, count]


def lock_holder(fd: int) -> Optional[int]:
    """The pid holding an flock on the file behind ``fd`` (from /proc/locks), None when unknown."""
    st = os.fstat(fd)
    try:
        with open("/proc/locks") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:              # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF" (hex major:minor)
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == want:
                return int(fields[4])
        except ValueError:
            continue
    return None


GRACE_S = 5.0      # a holder that was just killed may take a moment to exit (and release the lock)


def _lock(fd: int, grace_s: float) -> None:
    """flock(LOCK_EX) on ``fd``, trying again for ``grace_s`` seconds while another process holds it."""
    import fcntl
    deadline = time.monotonic() + grace_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


@contextlib.contextmanager
def hold(folder: PathLike, what: str = "output folder", grace_s: float = GRACE_S) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created, with its parents, when missing) for the ``with`` block.

    Another process holding it for longer than ``grace_s`` seconds (one just killed is still exiting for a
    moment): FolderBusyError naming its pid. Folders created here and still empty when the block ends are
    removed again, so a refused command leaves nothing behind.
    """
    import fcntl

    folder = Path(folder)
    created = []
    probe = folder
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileExistsError:
        raise ParameterError(f"{folder} is a file; the {what} must be a folder") from None
    except NotADirectoryError:
        raise ParameterError(f"{folder}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise output_error(exc, folder) from None
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    if key in _HELD:                         # this process holds it already (e.g. the command and its store)
        os.close(fd)
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    try:
        _lock(fd, grace_s)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            holder = lock_holder(fd)
            os.close(fd)
            who = f"process {holder}" if holder is not None else "another process"
            raise FolderBusyError(f"{folder}: the {what} is in use by {who} (a ddfad command writing into it); wait "
                                  "for it to finish or choose another folder") from None
        log.warning("%s: cannot lock the %s (%s); going on without the lock: make sure no other ddfad command "
                    "writes into it", folder, what, exc.strerror)      # a file system without locks (ENOLCK, ...)
    _HELD[key] = [fd, 1]
    try:
        yield folder
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            del _HELD[key]
            for made in created:             # innermost first; only the ones still empty
                try:
                    made.rmdir()
                except OSError:
                    break
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
            os.close(fd)


def holds(folder: PathLike) -> bool:
    """Whether this process holds the lock of ``folder``."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _HELD
