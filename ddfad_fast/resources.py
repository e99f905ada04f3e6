"""What a process has and may use: the memory it holds, whether features fit beside a working set, and the
plan (shard size, batch, decoding workers) that makes a feature computation fit ``--max-memory``, and the
allocator setting that keeps freed memory for reuse (:func:`keep_freed_memory`).

The memory plans of training (a step's working set, the distillation unroll) need the nets and live in
:mod:`ddfad_fast.train.memory`; this module needs only configs, so the data layer can use it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
import warnings
from typing import Optional, Tuple

from .config import FeatureConfig
from .errors import BackendFallbackWarning, ParameterError, ResourceError

DEFAULT_SHARD_SIZE = 4096
DEFAULT_BATCH = 256

GIB = 2 ** 30


PROC_STATUS = "/proc/self/status"
_WARNED_NO_PROC = False

# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_THRESHOLD = 2 ** 30           # blocks below 1 GiB come from the heap, not from a fresh mmap
KEEP_TRIM_THRESHOLD = 2 ** 31 - 1       # free heap memory is never handed back on free()
_LIBC: Optional[ctypes.CDLL] = None     # set once keep_freed_memory has changed the allocator


def keep_freed_memory() -> bool:
    """Make glibc's allocator keep the memory PyTorch frees on the CPU, for the next tensor of that size.

    By default glibc gives every block above 128 KiB-32 MiB back to the kernel on ``free()`` (``munmap``, or
    trimming the heap), so a training step that allocates and frees the same activations again and again
    page-faults them in anew every time: on the 2-core CPU a quarter of a run's CPU time went to the kernel
    (EmoDB report: 1,592 s system of 6,560 s). This raises glibc's mmap threshold to 1 GiB and its trim
    threshold to the maximum (``mallopt``), so freed blocks stay in the heap and are reused
    (``bench/malloc_reuse.py`` times training steps with both settings). The process's resident memory then
    stays near its peak between stages; :func:`process_rss_bytes` hands the free part back
    (``malloc_trim``) before it measures, so memory plans see what is in use. ``ddfad`` commands call this
    unless ``--max-memory`` is given (a peak held under a limit matters more there than speed).

    Returns True when the setting took effect; elsewhere than glibc (macOS, musl) False, with one
    BackendFallbackWarning saying the system allocator's defaults stay.
    """
    global _LIBC
    if _LIBC is not None:
        return True
    libc, why = None, "not a glibc Linux"
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError as exc:
            why = f"libc did not load: {exc}"
    if libc is not None:
        why = "glibc refused the thresholds"
        if (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(KEEP_MMAP_THRESHOLD)) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(KEEP_TRIM_THRESHOLD)) == 1):
            _LIBC = libc
            return True
    warnings.warn(f"ddfad_fast: glibc's mallopt is not available here ({why}); freed memory goes back to the "
                  "system as its allocator decides (CPU training may be slower)", BackendFallbackWarning, stacklevel=2)
    return False


def _release_free_memory() -> None:
    """Hand the heap's free memory back to the kernel when :func:`keep_freed_memory` is holding it."""
    if _LIBC is not None:
        _LIBC.malloc_trim(ctypes.c_size_t(0))


def process_rss_bytes() -> int:
    """Memory this process holds now that the kernel cannot take back: its anonymous and shared-memory
    resident pages (RssAnon + RssShmem; VmRSS where those are not reported). File-backed pages, such
    as the memory-mapped shards of a store being read, are page cache the kernel reclaims under
    pressure, so they do not count against a memory limit.

    Without ``/proc/self/status`` (not Linux) the process's peak resident set (``getrusage``) stands in: an
    upper bound, so memory plans are conservative, and a RuntimeWarning says so once. Where neither can be
    read, ResourceError: a plan must never assume an empty process. Freed memory that
    :func:`keep_freed_memory` holds for reuse is handed back first, so it is not counted."""
    _release_free_memory()
    fields = {}
    try:
        with open(PROC_STATUS) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssShmem"):
                    fields[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError) as exc:
        return _peak_rss_bytes(f"{PROC_STATUS} unreadable ({type(exc).__name__}: {exc})")
    if "RssAnon" in fields:
        return fields["RssAnon"] + fields.get("RssShmem", 0)
    if "VmRSS" in fields:
        return fields["VmRSS"]
    return _peak_rss_bytes(f"{PROC_STATUS} reports no RssAnon or VmRSS")


def _peak_rss_bytes(why: str) -> int:
    global _WARNED_NO_PROC
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError) as exc:
        raise ResourceError(f"cannot tell the memory this process uses ({why}; getrusage: {exc}); "
                            "run without --max-memory") from exc
    if not _WARNED_NO_PROC:
        _WARNED_NO_PROC = True
        warnings.warn(f"ddfad_fast: {why}; memory plans count the process's peak resident set instead "
                      "(an upper bound: plans are conservative)", RuntimeWarning, stacklevel=3)
    return int(peak) * (1 if sys.platform == "darwin" else 1024)      # bytes on macOS, KiB elsewhere


def features_in_memory(features_bytes: int, reserve_bytes: int, max_memory_gb: Optional[float], in_use: int,
                       what: str = "training") -> bool:
    """True when the features (``features_bytes``) fit in memory beside ``reserve_bytes`` and the ``in_use``
    bytes of the process under ``max_memory_gb`` (None: no limit, True); False when only the reserve fits
    (the features stay in their store); ResourceError with the numbers when even that does not fit."""
    if max_memory_gb is None:
        return True
    limit = max_memory_gb * GIB
    if in_use + reserve_bytes + features_bytes <= limit:
        return True
    if in_use + reserve_bytes <= limit:
        return False
    raise ResourceError(f"{what} needs about {(in_use + reserve_bytes) / GIB:.2f} GB with the features read from "
                        f"their store ({in_use / GIB:.2f} GB already in use, {reserve_bytes / GIB:.2f} GB for a "
                        f"step), over --max-memory {max_memory_gb:g} GB; lower the batch size or the width, or "
                        f"raise --max-memory")


def default_workers() -> int:
    """Decoding processes beside the one computing features: one per two cores beyond the first two, at most
    4; none on a 2-core machine, where a worker only competes with the transform for the cores (10k clips,
    bench/results/corpus_scale/corpus_scale.json: 1,743 clips/s without a worker, 1,739 with one, whose
    process tree peaks 215 MB higher)."""
    return max(0, min(4, ((os.cpu_count() or 1) - 2) // 2))


WORKER_BYTES = 200 * 2 ** 20        # private memory of one decoding process (measured: bench/corpus_scale.py)


def features_memory_bytes(config: FeatureConfig, shard_size: int, batch_size: int, workers: int) -> int:
    """What :func:`build_store` adds to a process's memory: two shard buffers (one being filled, one being
    written), the clips in flight (two batches per worker, one being transformed), the
    transform's working set for a batch, and the worker processes."""
    clip = 3 * config.n_mfcc * config.n_frames(config.fixed_length) * 4
    wave = config.fixed_length * 4
    frames = config.n_frames(config.fixed_length)
    transform = batch_size * frames * (config.n_fft + 2 * (config.n_fft // 2 + 1)) * 4 * 3
    return 2 * shard_size * clip + (2 * workers + 2) * batch_size * wave + transform + workers * WORKER_BYTES


def physical_memory_bytes() -> int:
    """The machine's memory (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(config: FeatureConfig, shard_size: int, batch_size: int, workers: int) -> None:
    """ResourceError when computing features with these sizes needs more than the machine's memory (a clip
    length that passes validation, such as --duration 1e9, would otherwise try to allocate petabytes)."""
    need, have = features_memory_bytes(config, shard_size, batch_size, workers), physical_memory_bytes()
    if have and need > have:
        raise ResourceError(f"features of {config.fixed_length / config.sample_rate:g} s clips need about "
                            f"{need / GIB:,.3g} GB (shards of {shard_size}, batches of {batch_size}), more than this "
                            f"machine's {have / GIB:.1f} GB; use a shorter --duration")


def plan_features(config: FeatureConfig, max_memory_gb: Optional[float], workers: Optional[int] = None,
                  shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = DEFAULT_BATCH) -> Tuple[int, int, int]:
    """``(shard_size, batch_size, workers)`` for :func:`build_store` that fit ``max_memory_gb`` with what
    this process already holds: the given ones when they fit, else fewer workers, smaller batches and
    shards (largest first); ResourceError with the numbers when even the smallest do not fit. Without a
    limit the given sizes are kept unless they exceed the machine's memory."""
    if workers is not None and workers < 0:
        raise ParameterError(f"--workers must be >= 0 (0: decode in this process), got {workers}")
    if max_memory_gb is not None and not max_memory_gb > 0:
        raise ParameterError(f"--max-memory must be > 0 GB, got {max_memory_gb}")
    workers = default_workers() if workers is None else workers
    if max_memory_gb is None:
        have = physical_memory_bytes()
        if not have or features_memory_bytes(config, shard_size, batch_size, workers) <= have:
            return shard_size, batch_size, workers
        check_fits(config, min(shard_size, 256), min(batch_size, 16), 0)
        max_memory_gb = have / GIB
    budget, base = max_memory_gb * 2 ** 30, process_rss_bytes()
    for shard in sorted({shard_size, min(shard_size, 1024), min(shard_size, 256)}, reverse=True):
        for batch in sorted({batch_size, min(batch_size, 64), min(batch_size, 16)}, reverse=True):
            for w in range(workers, -1, -1):
                if base + features_memory_bytes(config, shard, batch, w) <= budget:
                    return shard, batch, w
    smallest = features_memory_bytes(config, min(shard_size, 256), min(batch_size, 16), 0)
    raise ResourceError(f"features need about {(base + smallest) / 2 ** 30:.2f} GB even with shards of "
                        f"{min(shard_size, 256)} clips, batches of {min(batch_size, 16)} and no worker processes "
                        f"({base / 2 ** 30:.2f} GB already in use), over --max-memory {max_memory_gb:g} GB")
