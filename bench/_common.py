"""Shared helpers of the benchmark scripts: timing, machine facts, table printing, JSON output."""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ddfad_fast.provenance import git_commit, provenance  # noqa: F401  (git_commit: re-exported for the scripts)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sync(device: Optional[str] = None) -> None:
    if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, device: Optional[str] = None) -> Dict[str, float]:
    """Median / min / max wall seconds of ``fn()`` over ``repeats`` timed runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def backend_info() -> Dict[str, object]:
    """Whether ddfad_fast._C loaded (else why not), the backends that can run each op here, the automatic
    choice per op and device (float32), and the implementations that ran in this process so far."""
    try:
        from ddfad_fast.ops import dispatch, cpu
        return {"extension_loaded": cpu.extension_loaded(), "extension_error": cpu.extension_error(),
                "available": dispatch.available(), "automatic_choice": dispatch.default_choice(),
                "ran": dispatch.exercised()}
    except Exception as exc:  # the facts of a broken install are worth recording, not a crash at the end of a run
        return {"error": f"{type(exc).__name__}: {exc}"}


def machine_info() -> Dict[str, object]:
    """The machine, library versions, git commit, load average (:func:`ddfad_fast.provenance.provenance`, as in a
    run's report) and the ddfad_fast backends (:func:`backend_info`)."""
    return {**provenance(), "ddfad_backends": backend_info()}


def print_table(rows: List[Dict[str, object]], columns: List[str]) -> None:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def fastest(rows: List[Dict[str, object]], impls) -> Dict[str, str]:
    """The fastest of ``impls`` per (preset, B): {"PRESET/B=N": impl}, from rows with preset, B, impl, ms."""
    best: Dict[str, Dict[str, object]] = {}
    for r in rows:
        key = f"{r['preset']}/B={r['B']}"
        if r["impl"] in impls and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    return {key: str(r["impl"]) for key, r in best.items()}


def is_committed_result(path: Path) -> bool:
    """Whether ``path`` lies in bench/results (the committed results)."""
    results, path = RESULTS_DIR.resolve(), Path(path).resolve()
    return path == results or results in path.parents


def refuse_dirty(path: Path, commit: str) -> None:
    """Exit with a message where ``path`` is a committed result (in bench/results) and ``commit`` names
    uncommitted changes, unless DDFAD_BENCH_DIRTY_OK=1 (the commit then records the diff's hash)."""
    if "+dirty" in str(commit) and is_committed_result(path) and os.environ.get("DDFAD_BENCH_DIRTY_OK") != "1":
        raise SystemExit(f"refusing to write {path} from a tree with uncommitted changes ({commit}): commit "
                         f"first, or set DDFAD_BENCH_DIRTY_OK=1 to record the diff's hash")


def write_json(name: str, rows: List[Dict[str, object]], extra: Optional[Dict[str, object]] = None,
               out_dir: Optional[Path] = None, machine: Optional[Dict[str, object]] = None) -> Path:
    """Write ``{"machine": ..., "rows": rows, **extra}`` to ``out_dir/name.json`` (default bench/results).

    The machine record (``machine``, else :func:`machine_info` now) holds the date, the load average and the
    commit; a result meant for bench/results (the committed ones) from a tree with uncommitted changes is
    refused (:func:`refuse_dirty`)."""
    out = Path(out_dir or os.environ.get("DDFAD_BENCH_OUT", RESULTS_DIR))
    machine = machine or machine_info()
    path = out / f"{name}.json"
    refuse_dirty(path, machine["git_commit"])
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "rows": rows, **(extra or {})}, indent=2) + "\n")
    return path


# ---- torchaudio anchors (None where torchaudio does not import beside this torch build) -----------
def torchaudio_fd_mfcc(cfg, device: str = "cpu") -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """torchaudio's MFCC (Slaney mels, constant padding, dB, top_db 80) + compute_deltas twice, stacked
    like fd_mfcc: (B, L) -> (B, 3, n_mfcc, T). No pre-emphasis: torchaudio has none in its MFCC."""
    try:
        import torchaudio
    except Exception:
        return None
    mfcc = torchaudio.transforms.MFCC(sample_rate=cfg.sample_rate, n_mfcc=cfg.n_mfcc, norm="ortho", log_mels=False,
                                      melkwargs=dict(n_fft=cfg.n_fft, win_length=cfg.win_length,
                                                     hop_length=cfg.hop_length, n_mels=cfg.n_mels, center=True,
                                                     pad_mode="constant", norm="slaney", mel_scale="slaney")).to(device)
    delta = torchaudio.functional.compute_deltas

    def run(waves: torch.Tensor) -> torch.Tensor:
        m = mfcc(waves)
        d1 = delta(m, win_length=cfg.delta_width)
        return torch.stack([m, d1, delta(d1, win_length=cfg.delta_width)], dim=1)
    return run


def torchaudio_griffin_lim(cfg, n_iter: int, momentum: float, device: str = "cpu"
                           ) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """torchaudio.functional.griffinlim with our conventions (magnitude in, Hann window, fixed length)."""
    try:
        import torchaudio
    except Exception:
        return None
    window = torch.hann_window(cfg.win_length, device=device)
    return lambda mag: torchaudio.functional.griffinlim(mag, window, cfg.n_fft, cfg.hop_length, cfg.win_length, 1.0,
                                                        n_iter, momentum, cfg.fixed_length, True)

