"""Saved files: atomic writes, a format version, the config they were made with, safe loading.

Every file the package writes is a dict ``{"format": "ddfad_fast", "kind": KIND, "version": N,
"config": {...}, ...payload}`` saved with torch.save and read back with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists, dicts only: no pickled code).
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import torch

from .errors import DDFADError, FileFormatError, ParameterError
from .outputs import open_plain, output_error
from .schemas import check_artifact

FORMAT = "ddfad_fast"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_beside(path: Path, suffix: str = "") -> Tuple[int, str]:
    """The temporary file ``.NAME.tmp<suffix>`` beside ``path``, opened for writing: ``(fd, its path)``.

    One fixed name per target: a temporary left by a process killed mid-write (SIGKILL, power loss) is
    truncated and reused by the next write of the same file, so none accumulate. Created with the
    permissions a plain ``open`` gives (mode 0o666 less the umask); a symbolic link in its place is replaced,
    never followed. One writer per file (the folder's lock, :func:`ddfad_fast.outputs.hold`).
    """
    tmp = path.parent / f".{path.name}.tmp{suffix}"
    return open_plain(tmp), str(tmp)


def os_error_in(exc: BaseException) -> Optional[OSError]:
    """The OSError behind ``exc``: itself, or one in its chain (torch.save turns a failed write into a
    RuntimeError whose context is the OSError); None when there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and not isinstance(exc, DDFADError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _why_short(tmp: str) -> Optional[OSError]:
    """The OSError (with its errno: ENOSPC, EFBIG, EDQUOT...) that one more byte appended to ``tmp`` gives, after
    a write that came up short without saying why; None when that byte goes in."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return exc
    try:
        os.write(fd, b"\0")
        os.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
    return None


def atomic_write(path: PathLike, write) -> None:
    """Write a file atomically: ``write(fileobj)`` into a temporary file beside ``path``, fsync, rename.

    A failure leaves ``path`` as it was (the temporary file is removed); an OSError of the file system
    (disk full, no permission, read-only, quota, ulimit -f) becomes an OutputError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temporary_beside(path)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        cause = os_error_in(exc) if isinstance(exc, Exception) else None
        if cause is not None and cause.errno is None:       # numpy's short write ("N requested and M written")
            cause = _why_short(tmp) or cause
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if cause is not None:
            raise output_error(cause, path) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """``text`` as UTF-8 (a file name's bytes that are not UTF-8 are written as they are)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8", "surrogateescape")))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_artifact(path: PathLike, kind: str, payload: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None) -> None:
    """Atomically save ``payload`` as a versioned ``kind`` file carrying ``config`` (a plain dict)."""
    obj = {"format": FORMAT, "kind": kind, "version": FORMAT_VERSION, "config": dict(config or {})}
    overlap = set(obj) & set(payload)
    if overlap:
        raise ValueError(f"payload keys {sorted(overlap)} are reserved")
    obj.update(payload)
    atomic_write(path, lambda f: torch.save(obj, f))


def load_artifact(path: PathLike, kind: Optional[str] = None, expected_config: Optional[Mapping[str, Any]] = None,
                  config_keys: Optional[tuple] = None, map_location: str = "cpu") -> dict:
    """Load a file written by :func:`save_artifact`, refusing anything unexpected.

    Raises :class:`FileFormatError` naming the file when it is unreadable, not ours, of another kind,
    from another format version, contains pickled code, or was made with a config that differs from
    ``expected_config`` (on ``config_keys`` if given, else on every key of ``expected_config``).
    """
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(f"{path}: a folder, not a ddfad_fast file")
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:   # code or objects weights_only refuses: never load those
        if "GLOBAL" in str(exc):
            raise FileFormatError(f"{path}: refused: it holds Python objects or code that no ddfad_fast file holds "
                                  "(it is not a ddfad_fast file, or it is unsafe to load)") from None
        raise FileFormatError(f"{path}: not a loadable ddfad_fast file (it is damaged, or another kind of "
                              "file)") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - RuntimeError and others for garbage: one line, never torch's text
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FileFormatError(f"{path}: not a loadable ddfad_fast file ({type(exc).__name__}: {first})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FileFormatError(f"{path}: not a ddfad_fast file")
    if obj.get("version") != FORMAT_VERSION:
        raise FileFormatError(f"{path}: format version {obj.get('version')} but this ddfad_fast reads version {FORMAT_VERSION}")
    if kind is not None and obj.get("kind") != kind:
        raise FileFormatError(f"{path}: holds {obj.get('kind')!r}, expected {kind!r}")
    if expected_config is not None:
        saved = obj.get("config", {})
        keys = config_keys or tuple(expected_config)
        diff = {k: (saved.get(k), expected_config.get(k)) for k in keys if saved.get(k) != expected_config.get(k)}
        if diff:
            details = ", ".join(f"{k}: file {a!r} vs run {b!r}" for k, (a, b) in sorted(diff.items()))
            raise FileFormatError(f"{path}: made with a different config ({details})")
    check_artifact(path, obj)
    return obj


def read_json(path: PathLike, what: str = "file") -> Any:
    """The JSON in ``path``; FileFormatError naming it when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError as exc:
        raise FileFormatError(f"{path}: the {what} cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise FileFormatError(f"{path}: the {what} is not valid JSON ({exc}); it is damaged: delete it or start "
                              "again with --overwrite") from None


def saved_progress(path: Path, settings: dict, resume: bool) -> Optional[dict]:
    """The progress file of a resumable command: None when there is none; its contents with ``resume`` and
    the same ``settings``; else a ParameterError (never overwritten without --resume, never mixed)."""
    if not path.is_file():
        return None
    if not resume:
        raise ParameterError(f"{path} exists; pass --resume to continue it")
    saved = read_json(path, "progress file")
    if not isinstance(saved, dict) or saved.get("settings") != settings:
        raise ParameterError(f"{path} was made with other settings "
                             f"({saved.get('settings') if isinstance(saved, dict) else saved!r})")
    return saved
