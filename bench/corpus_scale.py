"""Feature store vs in-memory features on corpora of 10k / 30k / 100k one-second 16 kHz clips (speech16k).

No download: each corpus is generated from FSDD (``make_corpus``): a recording of the class's digit is
resampled to 16 kHz, pitch/formant-shifted by the class's band (overlap-add time stretch by ``p`` then
linear-interpolation varispeed by ``p``: pitch and formants x ``p``, duration kept), time-stretched by a
seeded speed factor in [0.85, 1.15] (pitch kept), placed at a random offset in 1 s (cropped when
longer), mixed with white noise at a random SNR (5-30 dB), scaled by a random gain (-20..-1 dB of full
scale) and given a small random DC offset. Written as PCM_16 WAV by two processes.

Class rule (35 classes): class ``k`` = digit ``k % 10``, pitch band ``k // 10`` (named ``d{digit}_p{band}``),
bands x 0.72 / 0.90 / 1.12 / 1.40 (each x U(0.97, 1.03)); band 3 exists for digits 0-4 only. Class sizes
are drawn with a mild seeded imbalance (weights exp(N(0, 0.15))). Split: clips made from FSDD recordings
with index 0-4 (FSDD's own test recordings, 10 %) are "test", the rest "train"; the speaker column is
the FSDD speaker. Layout: ``root/<class>/c<i>.wav``, ``root/manifest.csv`` (path,label,split,speaker;
relative paths), ``root/corpus.json`` (the settings: a corpus with the same ones is reused) and, with
``broken_fraction`` > 0, ``root/broken.txt`` (path<TAB>kind) of the files made unusable: garbage bytes,
empty, cut inside the header, cut inside the data chunk, float WAV with NaN samples (they stay in the
manifest: the store must skip them).

Measurements per size, each in its own process, peak memory = the sum of VmRSS (and of RssAnon) over the
process and its descendants polled every 0.1 s, plus the main process's VmHWM:

a. ``ddfad features --data MANIFEST --store DIR --feature-preset speech16k --quiet --threads T`` (store
   path; ``--workers`` 0 / 1 / default at the first size): wall, clips/s, peak RSS, store bytes.
b. ``ddfad_fast.data.extract_features`` on the same files in one process (today's in-memory path).
c. one expert epoch (``sgd_epoch``, ConvNet width 32 depth 3, batch 64, AUGMENT) on
   ``load_feature_split(..., in_memory=False / True, val_fraction=0.1).standardized()``; at most
   ``--max-steps`` steps (the first max_steps x 64 training clips when the epoch is longer).
d. one distillation iteration (cpc 10, syn_steps 20, batch_syn 100, eager) on the store-backed split
   with trajectories of one 3-epoch expert trained on 2,000 clips of the first size.
e. ``torchrun --nproc-per-node 1`` vs ``2`` for features (OMP_NUM_THREADS=1, --workers 0): wall, clips/s,
   and whether the two stores are byte-identical.
f. the first size again with 1 % broken files: kept + skipped == manifest rows, every broken file skipped.

    python bench/corpus_scale.py                       # sizes 10000 30000 100000 (30-60 min on 2 cores)
    python bench/corpus_scale.py --quick               # sizes 500 2000: a smoke run of the script
    python bench/corpus_scale.py --sizes 10000 --work /tmp/ddfad_corpus --out /tmp/cs

Corpora, stores and caches go under ``--work`` (default /tmp/ddfad_corpus; never inside the repository).
Writes corpus_scale.json and corpus_scale.png to bench/results/corpus_scale/ (or --out).
"""
from __future__ import annotations

import argparse
import csv
import filecmp
import io
import json
import math
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
FSDD = Path(os.environ.get("DDFAD_FSDD_DIR", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))
OUT_DIR = HERE / "results" / "corpus_scale"
SR = 16000
BANDS = (0.72, 0.90, 1.12, 1.40)
CORPUS_VERSION = 1
BROKEN_KINDS = ("garbage", "empty", "truncated_header", "truncated_data", "nan_float")
MB = 2 ** 20
RUN_DIR = Path(tempfile.gettempdir())      # working folder of the measured processes (main() sets --work)


# ============================================================================ corpus
def class_name(k: int) -> str:
    return f"d{k % 10}_p{k // 10}"


def _class_sizes(n_clips: int, n_classes: int, rng: np.random.Generator) -> List[int]:
    """Mildly imbalanced class sizes summing to ``n_clips`` (largest remainder)."""
    w = np.exp(rng.normal(0.0, 0.15, n_classes))
    share = n_clips * w / w.sum()
    sizes = np.floor(share).astype(int)
    for k in np.argsort(-(share - sizes))[:n_clips - sizes.sum()]:
        sizes[k] += 1
    return sizes.tolist()


def _ola_stretch(y: np.ndarray, factor: float, n: int = 512, hop: int = 128) -> np.ndarray:
    """Overlap-add time stretch (Hann frames, 75 % overlap at the output): length x ``factor``, pitch kept."""
    n_out = max(1, int(round(len(y) * factor)))
    frames = n_out // hop + 1
    starts = np.round(np.arange(frames) * hop / factor).astype(np.int64)
    padded = np.pad(y, (0, int(starts[-1]) + n - len(y) + 1)) if starts[-1] + n > len(y) else y
    win = np.hanning(n + 1)[:n]
    blocks = (padded[starts[:, None] + np.arange(n)] * win).reshape(frames, n // hop, hop)
    out = np.zeros((frames + n // hop - 1, hop))
    norm = np.zeros_like(out)
    wblocks = win.reshape(n // hop, hop)
    for j in range(n // hop):
        out[j:j + frames] += blocks[:, j]
        norm[j:j + frames] += wblocks[j]
    return (out / np.maximum(norm, 1e-3)).reshape(-1)[:n_out]


def _varispeed(y: np.ndarray, rate: float) -> np.ndarray:
    """Linear-interpolation resampling: length / ``rate``, pitch x ``rate``."""
    n_out = max(1, int(len(y) / rate))
    return np.interp(np.arange(n_out) * rate, np.arange(len(y)), y)


def _synth(src: np.ndarray, band: int, rng: np.random.Generator) -> np.ndarray:
    """One 1 s clip at 16 kHz from a 16 kHz FSDD recording (see the module docstring)."""
    p = BANDS[band] * rng.uniform(0.97, 1.03)
    speed = rng.uniform(0.85, 1.15)
    y = _varispeed(_ola_stretch(src, p / speed), p)        # pitch x p, duration / speed
    out = np.zeros(SR)
    if len(y) >= SR:
        start = rng.integers(0, len(y) - SR + 1)
        out[:] = y[start:start + SR]
        speech = out
    else:
        start = rng.integers(0, SR - len(y) + 1)
        out[start:start + len(y)] = y
        speech = y
    power = float(np.mean(speech ** 2)) + 1e-12
    snr_db = rng.uniform(5.0, 30.0)
    out += rng.normal(0.0, math.sqrt(power / 10 ** (snr_db / 10)), SR)
    out *= 10 ** (rng.uniform(-20.0, -1.0) / 20) / (np.abs(out).max() + 1e-9)
    out += rng.uniform(-0.01, 0.01)
    return np.clip(out, -1.0, 1.0)


def _wav_bytes(y: np.ndarray, subtype: str = "PCM_16") -> bytes:
    import soundfile
    buf = io.BytesIO()
    soundfile.write(buf, y, SR, subtype=subtype, format="WAV")
    return buf.getvalue()


_SOURCES: Dict[int, list] = {}     # digit -> [(speaker, index, wave 16 kHz float64)], set before the Pool forks


def _write_clips(job) -> int:
    root, seed, chunk = job
    for i, cls, src_pos, rel, kind in chunk:
        rng = np.random.default_rng([seed, i])
        digit, band = cls % 10, cls // 10
        y = _synth(_SOURCES[digit][src_pos][2], band, rng)
        path = Path(root) / rel
        if kind is None:
            data = _wav_bytes(y)
        elif kind == "garbage":
            data = rng.integers(0, 256, int(rng.integers(100, 40000)), dtype=np.uint8).tobytes()
        elif kind == "empty":
            data = b""
        elif kind == "truncated_header":
            data = _wav_bytes(y)[:int(rng.integers(14, 40))]
        elif kind == "truncated_data":
            full = _wav_bytes(y)
            data = full[:44 + (len(full) - 44) // 2]
        else:                                                   # nan_float
            y = y.copy()
            y[rng.integers(0, SR, 16)] = np.nan
            import soundfile
            buf = io.BytesIO()
            soundfile.write(buf, y, SR, subtype="FLOAT", format="WAV")
            data = buf.getvalue()
        path.write_bytes(data)
    return len(chunk)


def _load_one(path: str):
    import torch
    from ddfad_fast import load_audio
    torch.set_num_threads(1)
    digit, speaker, index = Path(path).stem.split("_")
    wave, _ = load_audio(path, sample_rate=SR, dtype=torch.float64)
    return int(digit), speaker, int(index), wave.numpy()


def _load_sources(cache: Path, workers: int) -> Dict[int, list]:
    """FSDD resampled to 16 kHz (ddfad_fast.load_audio), by digit; cached in ``cache``: a .npz of plain arrays
    read with ``allow_pickle=False`` (the folder may be shared: a cache file must not be able to carry code)."""
    files = sorted(FSDD.glob("*.wav"))
    if len(files) < 10:
        raise SystemExit(f"no FSDD recordings in {FSDD}")
    stamp = json.dumps([len(files), str(FSDD)])
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                if str(saved["stamp"]) == stamp:
                    waves = np.split(saved["waves"], saved["offsets"][1:-1])
                    out: Dict[int, list] = {}
                    for digit, speaker, index, wave in zip(saved["digits"].tolist(), saved["speakers"].tolist(),
                                                           saved["indices"].tolist(), waves):
                        out.setdefault(int(digit), []).append((speaker, int(index), wave))
                    return out
        except (OSError, ValueError, KeyError):      # a stale or broken cache is rebuilt
            pass
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        loaded = pool.map(_load_one, [str(f) for f in files], chunksize=50)
    out = {}
    for digit, speaker, index, wave in loaded:
        out.setdefault(digit, []).append((speaker, index, wave))
    rows = [(d, sp, i, w) for d in sorted(out) for sp, i, w in out[d]]
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, stamp=np.array(stamp), digits=np.array([r[0] for r in rows], dtype=np.int64),
             speakers=np.array([r[1] for r in rows]), indices=np.array([r[2] for r in rows], dtype=np.int64),
             offsets=np.cumsum([0] + [len(r[3]) for r in rows]), waves=np.concatenate([r[3] for r in rows]))
    os.replace(tmp, cache)
    return out


def make_corpus(root, n_clips: int, n_classes: int = 35, seed: int = 0, broken_fraction: float = 0.0,
                workers: int = 2) -> Dict[str, object]:
    """Write (or reuse) a corpus of ``n_clips`` 1 s 16 kHz PCM_16 WAVs in ``root`` (see the module docstring).
    Returns its settings plus ``seconds`` (0 when reused) and ``reused``."""
    root = Path(root).resolve()
    if root == REPO or REPO in root.parents:
        raise SystemExit(f"{root}: corpora go outside the repository (--work)")
    if not 1 <= n_classes <= 40:
        raise SystemExit(f"n_classes must be in 1..40 (10 digits x 4 bands), got {n_classes}")
    settings = {"version": CORPUS_VERSION, "n_clips": n_clips, "n_classes": n_classes, "seed": seed,
                "broken_fraction": broken_fraction, "sample_rate": SR}
    meta = root / "corpus.json"
    if meta.is_file() and (root / "manifest.csv").is_file():
        try:
            if {k: v for k, v in json.loads(meta.read_text()).items() if k in settings} == settings:
                return {**settings, "root": str(root), "seconds": 0.0, "reused": True}
        except ValueError:
            pass
    if root.exists():
        if any(root.iterdir()) and not (meta.exists() or (root / "manifest.csv").exists()):
            raise SystemExit(f"{root} is not empty and holds no corpus of this script: not touching it")
        shutil.rmtree(root)
    start = time.perf_counter()
    global _SOURCES
    if not _SOURCES:
        _SOURCES = _load_sources(root.parent / "fsdd16k_sources.npz", workers)
    rng = np.random.default_rng([seed, 12345])
    classes = list(range(n_classes))
    sizes = _class_sizes(n_clips, n_classes, rng)
    plan = []                      # (i, class, source position, relative path, broken kind or None)
    labels = np.repeat(classes, sizes)
    rng.shuffle(labels)
    broken = set()
    n_broken = int(round(broken_fraction * n_clips))
    if n_broken:
        broken = set(rng.choice(n_clips, n_broken, replace=False).tolist())
    order = sorted(broken)
    kinds = {i: BROKEN_KINDS[j % len(BROKEN_KINDS)] for j, i in enumerate(order)}
    rows = []
    for i, cls in enumerate(labels.tolist()):
        pos = int(rng.integers(0, len(_SOURCES[cls % 10])))
        speaker, index, _ = _SOURCES[cls % 10][pos]
        rel = f"{class_name(cls)}/c{i:06d}.wav"
        plan.append((i, cls, pos, rel, kinds.get(i)))
        rows.append((rel, class_name(cls), "test" if index <= 4 else "train", speaker))
    root.mkdir(parents=True)
    for k in classes:
        (root / class_name(k)).mkdir()
    chunks = [plan[s:s + 500] for s in range(0, len(plan), 500)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        done = sum(pool.imap_unordered(_write_clips, [(str(root), seed, c) for c in chunks]))
    assert done == n_clips
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "speaker"])
        w.writerows(rows)
    if broken:
        (root / "broken.txt").write_text("".join(f"{plan[i][3]}\t{kinds[i]}\n" for i in order))
    seconds = time.perf_counter() - start
    meta.write_text(json.dumps({**settings, "seconds": seconds,
                                "class_sizes": dict(zip(map(class_name, classes), sizes))}, indent=1))
    return {**settings, "root": str(root), "seconds": seconds, "reused": False}


# ============================================================================ measuring processes
def _proc_status(pid: int) -> Optional[Dict[str, int]]:
    try:
        with open(f"/proc/{pid}/status") as f:
            out = {}
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "VmHWM", "PPid"):
                    out[key] = int(rest.split()[0])
            return out
    except (OSError, ValueError, IndexError):
        return None


def _pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split among the processes that map them), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree(root_pid: int) -> List[int]:
    """``root_pid`` and its descendants (from the PPid of every /proc entry)."""
    parents: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
                parents[int(name)] = int(stat[stat.rfind(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def run_measured(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, poll_s: float = 0.1,
                 label: str = "") -> Dict[str, object]:
    """Run ``cmd``; wall seconds, peak summed VmRSS / RssAnon of its process tree, the main process's VmHWM,
    the most processes seen, load average before/after, and the ``RESULT {json}`` line it printed."""
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {' '.join(map(str, cmd))}", file=sys.stderr, flush=True)
    load_before = list(os.getloadavg())
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, cwd=RUN_DIR,
                                env={**os.environ, **(env or {})})
        peak_rss = peak_anon = peak_pss = hwm = procs = 0
        while proc.poll() is None:
            rss = anon = pss = 0
            pids = _tree(proc.pid)
            for pid in pids:
                st = _proc_status(pid)
                if st is None:
                    continue
                rss += st.get("VmRSS", 0)
                anon += st.get("RssAnon", 0)
                pss += _pss_kb(pid)
                if pid == proc.pid:
                    hwm = max(hwm, st.get("VmHWM", 0))
            peak_rss, peak_anon, procs = max(peak_rss, rss), max(peak_anon, anon), max(procs, len(pids))
            peak_pss = max(peak_pss, pss)
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    result = None
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    row = {"wall_s": wall, "rc": proc.returncode, "peak_rss_mb": peak_rss / 1024, "peak_anon_mb": peak_anon / 1024,
           "peak_pss_mb": peak_pss / 1024, "main_hwm_mb": hwm / 1024, "max_procs": procs, "load_before": load_before,
           "load_after": list(os.getloadavg()), "cmd": " ".join(map(str, cmd))}
    if result is not None:
        row["child"] = result
    if proc.returncode != 0:
        row["output_tail"] = text[-3000:]
        print(f"  FAILED rc={proc.returncode}:\n{text[-3000:]}", file=sys.stderr, flush=True)
    else:
        print(f"  {wall:.1f} s, peak RSS {peak_rss / 1024:.0f} MB (anon {peak_anon / 1024:.0f} MB)",
              file=sys.stderr, flush=True)
    return row


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def same_files(a: Path, b: Path) -> Dict[str, object]:
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    differ = [n for n in names_a if n in names_b and not filecmp.cmp(a / n, b / n, shallow=False)]
    return {"identical": names_a == names_b and not differ, "files": len(names_a),
            "only_one_side": sorted(set(names_a) ^ set(names_b)), "differ": differ}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ============================================================================ child processes
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _mem() -> Dict[str, float]:
    return {"rss_mb": _status_kb("VmRSS") / 1024, "anon_mb": _status_kb("RssAnon") / 1024,
            "hwm_mb": _status_kb("VmHWM") / 1024}


def child_inmemory(a: dict) -> dict:
    import torch
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.data import extract_features
    torch.set_num_threads(a["threads"])
    paths = Path(a["list"]).read_text().splitlines()
    start = time.perf_counter()
    x, kept, skipped = extract_features(paths, FeatureConfig.speech16k(), progress=False)
    return {"extract_s": time.perf_counter() - start, "kept": len(kept), "skipped": len(skipped),
            "shape": list(x.shape), "bytes": x.numel() * 4, **_mem()}


def child_store(a: dict) -> dict:
    """build_store timed inside the process, as child_inmemory times extract_features: the two paths' own
    throughput, without interpreter start-up or the command line around them."""
    import torch
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.data import labelled_items
    from ddfad_fast.data.store import build_store
    torch.set_num_threads(a["threads"])
    config = FeatureConfig.speech16k()
    items, _ = labelled_items(a["manifest"], config)
    shutil.rmtree(a["store"], ignore_errors=True)
    start = time.perf_counter()
    store = build_store(items, config, a["store"], workers=a["workers"])
    out = {"build_s": time.perf_counter() - start, "kept": len(store), **_mem()}
    shutil.rmtree(a["store"], ignore_errors=True)
    return out


def _load_split(a: dict, in_memory: bool, norm=None):
    """``load_feature_split(..., val_fraction=0.1)`` standardised (fitted on the training clips, or ``norm``):
    through its ``standardize`` argument where the package has one (no second copy), else ``.standardized()``."""
    import inspect
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.data import load_feature_split
    kwargs = dict(cache_dir=Path(a["cache"]), in_memory=in_memory, progress=False, val_fraction=0.1)
    if "standardize" in inspect.signature(load_feature_split).parameters:
        return load_feature_split(a["manifest"], FeatureConfig.speech16k(), standardize=norm or True, **kwargs)
    return load_feature_split(a["manifest"], FeatureConfig.speech16k(), **kwargs).standardized(norm)


def child_epoch(a: dict) -> dict:
    import torch
    from ddfad_fast.config import ModelConfig
    from ddfad_fast.data import take_rows
    from ddfad_fast.train.experts import sgd_epoch, training_stepper
    from ddfad_fast.train.models import build_model
    from ddfad_fast.presets import AUGMENT
    torch.set_num_threads(a["threads"])
    start = time.perf_counter()
    split = _load_split(a, a["in_memory"])
    load_s, after_load = time.perf_counter() - start, _mem()
    net = build_model(ModelConfig(width=32, depth=3), split.in_shape, split.num_classes)
    params = net.init_params(torch.Generator().manual_seed(0))
    velocity = torch.zeros_like(params)
    x, y = split.x_train, split.y_train
    n_train, steps_full = len(y), -(-len(y) // 64)
    if a["max_steps"] and steps_full > a["max_steps"]:
        keep = torch.arange(a["max_steps"] * 64)
        x, y = take_rows(x, keep) if not isinstance(x, torch.Tensor) else x[:len(keep)], y[keep]
    stepper = training_stepper(net, compile=False)
    warm = torch.arange(min(len(y), 3 * 64))                 # 3 untimed steps: allocator, kernels
    sgd_epoch(net, params.clone(), velocity.clone(), take_rows(x, warm) if not isinstance(x, torch.Tensor) else x[warm],
              y[warm], lr=0.01, momentum=0, weight_decay=0, batch_size=64,
              generator=torch.Generator().manual_seed(1), augment=AUGMENT, stepper=stepper)
    from _common import reset_peak
    reset = reset_peak()
    times, loss = [], None
    for _ in range(a["repeats"]):        # the same epoch from the same start, ``repeats`` times: min is reported
        p, v = params.clone(), velocity.clone()
        start = time.perf_counter()
        loss = sgd_epoch(net, p, v, x, y, lr=0.01, momentum=0, weight_decay=0, batch_size=64,
                         generator=torch.Generator().manual_seed(0), augment=AUGMENT, stepper=stepper)
        times.append(time.perf_counter() - start)
    epoch_s = min(times)
    steps = -(-len(y) // 64)
    return {"in_memory": a["in_memory"], "x_type": type(split.x_train).__name__, "load_s": load_s,
            "n_train": n_train, "steps_full_epoch": steps_full, "steps": steps, "clips": len(y), "epoch_s": epoch_s, "epoch_s_each": times,
            "step_ms": 1e3 * epoch_s / steps, "loss": loss, "after_load": after_load,
            "during_epoch": {**_mem(), "hwm_reset": reset}}


def child_experts(a: dict) -> dict:
    import dataclasses
    import torch
    from ddfad_fast.config import ExpertConfig, ModelConfig
    from ddfad_fast.train.experts import train_experts
    from ddfad_fast.io import load_artifact
    from ddfad_fast.presets import AUGMENT
    torch.set_num_threads(a["threads"])
    split = _load_split(a, False)
    gen = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(split.y_train), generator=gen)[:a["n_train"]].sort().values
    va = torch.randperm(len(split.y_val), generator=gen)[:500].sort().values
    small = dataclasses.replace(split, x_train=split.x_train[tr], y_train=split.y_train[tr], x_val=split.x_val[va],
                                y_val=split.y_val[va], speakers_train=None, paths_train=None)
    config = ExpertConfig(num_experts=1, epochs=3, batch_size=64, model=ModelConfig(width=32, depth=3),
                          compile=False, augment=AUGMENT)
    start = time.perf_counter()
    paths = train_experts(small, config, Path(a["out"]), progress=False)
    obj = load_artifact(paths[0], kind="trajectory")
    return {"train_s": time.perf_counter() - start, "n_train": len(tr), "epochs": 3,
            "val_acc_per_epoch": [float(v) for v in obj["monitor_acc"]], "chance": 1 / split.num_classes,
            "train_loss": [float(v) for v in obj["train_loss"]], **_mem()}


def child_distill(a: dict) -> dict:
    import torch
    from ddfad_fast.config import DistillConfig, FeatureConfig
    from ddfad_fast.train.distill import distill
    from ddfad_fast.train.experts import load_trajectories
    from ddfad_fast.presets import AUGMENT
    torch.set_num_threads(a["threads"])
    traj = load_trajectories(Path(a["experts"]), FeatureConfig.speech16k())
    start = time.perf_counter()
    split = _load_split(a, False, norm=traj.norm)          # the experts' standardisation: no pass to fit one
    load_s, after_load = time.perf_counter() - start, _mem()
    cpc = min(10, int(torch.bincount(split.y_train, minlength=split.num_classes).min()))
    config = DistillConfig(cpc=cpc, syn_steps=20, iterations=a["iterations"], batch_syn=100, checkpoint_every=0, eval_every=0,
                           compile=False, augment=AUGMENT, expert_epochs=2, max_start_epoch=1)
    from _common import reset_peak
    reset = reset_peak()
    start = time.perf_counter()
    result = distill(split.x_train, split.y_train, traj, config, out_dir=None, progress=False)
    call_s = time.perf_counter() - start
    each = [float(v) for v in result.history["seconds"]]
    iteration_s = float(np.median(each))
    return {"x_type": type(split.x_train).__name__, "n_train": len(split.y_train), "cpc": cpc, "load_s": load_s,
            "distill_call_s": call_s, "iterations": len(each), "iteration_s_each": each,
            "iteration_s": iteration_s, "outside_iteration_s": call_s - sum(each),
            "loss": float(result.history["loss"][0]), "after_load": after_load,
            "during_distill": {**_mem(), "hwm_reset": reset}}


def child_learn(a: dict) -> dict:
    """Whether the classes are learnable: a ConvNet (width 32, depth 3) trained on all training clips."""
    import torch
    from ddfad_fast.config import ModelConfig
    from ddfad_fast.train.experts import accuracy, sgd_epoch
    from ddfad_fast.train.models import build_model
    from ddfad_fast.presets import AUGMENT
    torch.set_num_threads(a["threads"])
    split = _load_split(a, True)
    net = build_model(ModelConfig(width=32, depth=3), split.in_shape, split.num_classes)
    params = net.init_params(torch.Generator().manual_seed(0))
    velocity, gen, history = torch.zeros_like(params), torch.Generator().manual_seed(0), []
    for epoch in range(a["epochs"]):
        loss = sgd_epoch(net, params, velocity, split.x_train, split.y_train, lr=0.05, momentum=0.9,
                         weight_decay=5e-4, batch_size=64, generator=gen, augment=AUGMENT)
        history.append({"epoch": epoch + 1, "loss": loss, "val_acc": accuracy(net, params, split.x_val, split.y_val)})
    with torch.no_grad():
        pred = torch.cat([net.forward(params, split.x_test[i:i + 512]).argmax(1)
                          for i in range(0, len(split.y_test), 512)]).tolist()
    names, truth = split.class_names, split.y_test.tolist()
    part = (lambda k, j: names[k].split("_")[j])
    return {"epochs": a["epochs"], "sgd": "lr 0.05, momentum 0.9, weight decay 5e-4, batch 64, AUGMENT",
            "history": history, "test_acc": sum(p == t for p, t in zip(pred, truth)) / len(truth),
            "test_digit_acc": sum(part(p, 0) == part(t, 0) for p, t in zip(pred, truth)) / len(truth),
            "test_band_acc": sum(part(p, 1) == part(t, 1) for p, t in zip(pred, truth)) / len(truth),
            "chance": 1 / len(names), "n_train": len(split.y_train), "n_test": len(truth)}


CHILDREN = {"learn": child_learn, "inmemory": child_inmemory, "store": child_store, "epoch": child_epoch, "experts": child_experts, "distill": child_distill}


def child(kind: str, a: dict) -> List[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(a)]
    return cmd


# ============================================================================ the benchmark
def snapshot_package(work: Path, ref: str) -> Dict[str, object]:
    """The package as committed at ``ref`` (``git archive``), in ``work/pkg_<commit>``, with the compiled
    extension of the checkout beside it: every measured process imports it (PYTHONPATH) instead of the
    editable checkout, which others may be editing while the benchmark runs. ``ref`` "worktree": the
    checkout as it is (no snapshot)."""
    if ref == "worktree":
        return {"ref": ref, "commit": None, "path": str(REPO)}
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    dest = work / f"pkg_{sha[:12]}"
    extensions = sorted((REPO / "ddfad_fast").glob("_C*.so"))
    if not (dest / "ddfad_fast" / "__init__.py").is_file():
        tmp = work / f".pkg_{sha[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        paths = [p for p in ("ddfad_fast", "kernels") if subprocess.run(
            ["git", "cat-file", "-e", f"{sha}:{p}"], cwd=REPO, capture_output=True).returncode == 0]
        archive = subprocess.run(["git", "archive", sha, *paths], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        if (tmp / "kernels").is_dir():            # the editable install maps ddfad_fast.kernels to ./kernels
            os.replace(tmp / "kernels", tmp / "ddfad_fast" / "kernels")
        for ext in extensions:
            shutil.copy2(ext, tmp / "ddfad_fast" / ext.name)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return {"ref": ref, "commit": sha, "path": str(dest),
            "extension": [{"file": e.name, "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.stat().st_mtime))}
                          for e in extensions]}


def ddfad_cmd(*args) -> List[str]:
    return [sys.executable, "-m", "ddfad_fast.cli", *map(str, args)]


def index_of(store: Path) -> dict:
    return json.loads((store / "index.json").read_text())


def measure_features(manifest: Path, store: Path, threads: int, workers: Optional[int], label: str) -> dict:
    if store.exists():
        shutil.rmtree(store)
    cmd = ddfad_cmd("features", "--data", manifest, "--store", store, "--feature-preset", "speech16k", "--quiet",
                    "--threads", threads, *(["--workers", workers] if workers is not None else []))
    row = run_measured(cmd, label=label)
    if row["rc"] == 0:
        index = index_of(store)
        row.update(kept=len(index["rows"]), skipped=len(index["skipped"]), store_bytes=folder_bytes(store),
                   shards=len(index["shards"]))
    return row


def link_cache(manifest: Path, store: Path, cache: Path) -> str:
    """Make ``cache/store_<key>`` (what load_feature_split looks for) a link to the finished ``store``."""
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.data import labelled_items
    from ddfad_fast.data.store import index_key, store_key
    config = FeatureConfig.speech16k()
    items, _ = labelled_items(manifest, config)
    key = store_key(items, config)
    target = cache / f"store_{key[:20]}"
    if index_key(store / "index.json") != key:
        return f"store key differs: the cache builds its own store in {target}"
    cache.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(store.resolve())
    return f"{target} -> {store}"


def check_broken(corpus: Path, store: Path) -> dict:
    index = index_of(store)
    with open(corpus / "manifest.csv") as f:
        manifest = [str((corpus / r["path"]).resolve()) for r in csv.DictReader(f)]
    broken = {}
    for line in (corpus / "broken.txt").read_text().splitlines():
        rel, kind = line.split("\t")
        broken[str((corpus / rel).resolve())] = kind
    kept = {str(Path(r[0]).resolve()) for r in index["rows"]}
    skipped = {str(Path(p).resolve()): reason for p, reason in index["skipped"]}
    good = set(manifest) - set(broken)
    reasons = Counter()
    for path, kind in broken.items():
        if path in skipped:
            words = " ".join(w for w in skipped[path].split() if not any(c.isdigit() for c in w))
            reasons[f"{kind}: {words[:70]}"] += 1
    return {"manifest_rows": len(manifest), "kept": len(index["rows"]), "skipped": len(index["skipped"]),
            "kept_plus_skipped_equals_manifest": len(index["rows"]) + len(index["skipped"]) == len(manifest),
            "broken_listed": len(broken), "broken_all_skipped": all(p in skipped for p in broken),
            "broken_not_skipped": sorted(p for p in broken if p not in skipped)[:10],
            "good_missing": sorted(good - kept)[:10], "good_all_kept": good <= kept,
            "skipped_but_not_broken": sorted(set(skipped) - set(broken))[:10],
            "broken_kinds": dict(Counter(broken.values())), "reasons": dict(sorted(reasons.items()))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="corpus sizes (default 10000 30000 100000)")
    parser.add_argument("--quick", action="store_true", help="sizes 500 2000: a smoke run of this script")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ddfad_corpus"),
                        help="corpora, stores and caches (default /tmp/ddfad_corpus; outside the repository)")
    parser.add_argument("--out", type=Path, default=None, help=f"folder of the JSON and PNG (default {OUT_DIR})")
    parser.add_argument("--skip-generate", action="store_true", help="use the corpora already in --work as they are")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of every measured process but the torchrun ranks (default: the cores)")
    parser.add_argument("--max-steps", type=int, default=300, help="expert epoch: at most this many steps (default 300)")
    parser.add_argument("--torchrun-sizes", type=int, nargs="*", default=None,
                        help="sizes of the torchrun comparison (default: the two smallest)")
    parser.add_argument("--learn-epochs", type=int, default=8,
                        help="epochs of the learnability check on the first size (0: skip it)")
    parser.add_argument("--package", default="HEAD",
                        help="the git commit of ddfad_fast to measure, run from a snapshot in --work (default HEAD); "
                             "'worktree': the checkout as it is, uncommitted edits included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON in --out; measure nothing")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CHILDREN[args.child[0]](json.loads(args.child[1]))
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from _common import machine_info, print_table, write_json
    if args.replot:
        saved = json.loads((Path(args.out or OUT_DIR) / "corpus_scale.json").read_text())
        plot(saved["rows"], saved["sizes"], Path(args.out or OUT_DIR) / "corpus_scale.png")
        return 0
    sizes = sorted(args.sizes or ([500, 2000] if args.quick else [10000, 30000, 100000]))
    torchrun_sizes = args.torchrun_sizes if args.torchrun_sizes is not None else sizes[:2]
    work = args.work.resolve()
    if work == REPO or REPO in work.parents:
        parser.error(f"--work {work} is inside the repository")
    work.mkdir(parents=True, exist_ok=True)
    package = snapshot_package(work, args.package)
    if package["commit"] is not None:
        sys.path.insert(0, package["path"])
        os.environ["PYTHONPATH"] = os.pathsep.join([package["path"]] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    global RUN_DIR
    RUN_DIR = work                  # measured processes start here: "-m ddfad_fast.cli" in the repository would
    found = subprocess.run([sys.executable, "-c", "import ddfad_fast; print(ddfad_fast.__file__)"], cwd=RUN_DIR,
                           capture_output=True, text=True).stdout.strip()
    if not found.startswith(str(Path(package["path"]).resolve())):      # ... import the checkout's ./ddfad_fast
        raise SystemExit(f"the measured processes would import {found}, not the package in {package['path']}")
    package["imported_from"] = found
    print(f"package: {package}", file=sys.stderr, flush=True)
    out_dir = args.out or OUT_DIR
    started = time.time()
    machine_start = machine_info()
    package_changes = subprocess.run(["git", "status", "--porcelain", "--", "ddfad_fast"], cwd=REPO,
                                     capture_output=True, text=True).stdout.splitlines()
    rows: List[Dict[str, object]] = []
    corpora, details = {}, {}
    t = args.threads

    def add(size, what, m, **extra):
        child_out = m.get("child", {})
        rows.append({"size": size, "measurement": what, "wall_s": m.get("wall_s"),
                     "peak_rss_mb": m.get("peak_rss_mb"), "peak_anon_mb": m.get("peak_anon_mb"),
                     "peak_pss_mb": m.get("peak_pss_mb"),
                     "main_hwm_mb": m.get("main_hwm_mb"), "rc": m.get("rc"), **extra})
        details[f"{size}/{what}"] = m
        return child_out

    broken_sizes = sizes[:1]
    for n in sizes + [f"{b}_broken" for b in broken_sizes]:
        broken = isinstance(n, str)
        size = int(str(n).split("_")[0])
        root = work / (f"corpus_{size}_s{args.seed}" + ("_broken0.01" if broken else ""))
        if args.skip_generate and (root / "manifest.csv").is_file():
            corpora[str(n)] = {"root": str(root), "reused": True, "seconds": 0.0, "skip_generate": True}
        else:
            print(f"[{time.strftime('%H:%M:%S')}] corpus {n}: {root}", file=sys.stderr, flush=True)
            corpora[str(n)] = make_corpus(root, size, 35, args.seed, 0.01 if broken else 0.0)
            print(f"  {corpora[str(n)]['seconds']:.1f} s (reused: {corpora[str(n)]['reused']})", file=sys.stderr)
        corpora[str(n)]["bytes"] = folder_bytes(root)

    experts_dir = work / f"experts_n{sizes[0]}_s{args.seed}"
    for size in sizes:
        root = Path(corpora[str(size)]["root"])
        manifest = root / "manifest.csv"
        store, cache = work / f"store_{size}", work / f"cache_{size}"
        # a. store path (default workers), plus workers 0 and 1 at the first size
        m = measure_features(manifest, store, t, None, f"features store {size}")
        add(size, "features store", m, clips_per_s=size / m["wall_s"], store_mb=m.get("store_bytes", 0) / MB,
            kept=m.get("kept"))
        for w in ((0, 1) if size == sizes[0] else (0,)):       # explicit worker counts beside the default
            extra_store = work / f"store_{size}_w{w}"
            m = measure_features(manifest, extra_store, t, w, f"features store {size} --workers {w}")
            add(size, f"features store --workers {w}", m, clips_per_s=size / m["wall_s"],
                store_mb=m.get("store_bytes", 0) / MB, kept=m.get("kept"))
            shutil.rmtree(extra_store, ignore_errors=True)
        # b. in-memory path
        with open(manifest) as f:
            paths = [str(root / r["path"]) for r in csv.DictReader(f)]
        listing = work / f"paths_{size}.txt"
        listing.write_text("\n".join(paths) + "\n")
        m = run_measured(child("inmemory", {"list": str(listing), "threads": t}), label=f"features in-memory {size}")
        c = m.get("child", {})
        add(size, "features in-memory", m, clips_per_s=size / m["wall_s"], kept=c.get("kept"),
            extract_clips_per_s=size / c["extract_s"] if c.get("extract_s") else None)
        m = run_measured(child("store", {"manifest": str(manifest), "store": str(work / f"store_{size}_inproc"),
                                         "threads": t, "workers": 0}), label=f"features store in process {size}")
        c = m.get("child", {})
        add(size, "features store in process", m, kept=c.get("kept"),
            build_clips_per_s=size / c["build_s"] if c.get("build_s") else None)
        # c. one expert epoch, store vs memory
        details[f"{size}/cache"] = link_cache(manifest, store, cache)
        common = {"manifest": str(manifest), "cache": str(cache), "threads": t, "max_steps": args.max_steps,
                  "repeats": 2, "iterations": 3}
        for in_memory in (False, True):
            what = f"expert epoch {'memory' if in_memory else 'store'}"
            m = run_measured(child("epoch", {**common, "in_memory": in_memory}), label=f"{what} {size}")
            c = m.get("child", {})
            add(size, what, m, step_ms=c.get("step_ms"), steps=c.get("steps"), load_s=c.get("load_s"),
                epoch_rss_mb=c.get("during_epoch", {}).get("hwm_mb"))
        # d. one distillation iteration on the store
        if not (experts_dir / "expert_000.pt").is_file():
            m = run_measured(child("experts", {**common, "out": str(experts_dir), "n_train": 2000}),
                             label="experts (for distillation)")
            details["experts"] = m
        m = run_measured(child("distill", {**common, "experts": str(experts_dir)}), label=f"distill {size}")
        c = m.get("child", {})
        add(size, "distill 3 iterations (store)", m, iteration_s=c.get("iteration_s"),
            outside_iteration_s=c.get("outside_iteration_s"), load_s=c.get("load_s"),
            epoch_rss_mb=c.get("during_distill", {}).get("hwm_mb"))
        if size == sizes[0] and args.learn_epochs:
            details["learnability"] = run_measured(child("learn", {**common, "epochs": args.learn_epochs}),
                                                   label=f"learnability check {size}")
        # e. torchrun 1 vs 2 processes
        if size in torchrun_sizes:
            made = {}
            for nproc in (1, 2):
                trs = work / f"store_{size}_torchrun{nproc}"
                shutil.rmtree(trs, ignore_errors=True)
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", nproc, "--rdzv-backend",
                       "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "ddfad_fast.cli", "features",
                       "--data", manifest, "--store", trs, "--feature-preset", "speech16k", "--quiet", "--workers", 0]
                m = run_measured(cmd, env={"OMP_NUM_THREADS": "1"}, label=f"torchrun x{nproc} {size}")
                add(size, f"features torchrun x{nproc}", m, clips_per_s=size / m["wall_s"],
                    store_mb=folder_bytes(trs) / MB if (trs / "index.json").is_file() else None)
                made[nproc] = trs
            same = same_files(made[1], made[2])
            details[f"{size}/torchrun_identical"] = same
            rows[-1]["identical_to_x1"] = same["identical"]
            for trs in made.values():
                shutil.rmtree(trs, ignore_errors=True)
    # f. broken files
    broken_checks = {}
    for size in broken_sizes:
        root = Path(corpora[f"{size}_broken"]["root"])
        store = work / f"store_{size}_broken"
        m = measure_features(root / "manifest.csv", store, t, None, f"features store {size} broken")
        add(size, "features store, 1 % broken", m, clips_per_s=size / m["wall_s"], kept=m.get("kept"))
        if m["rc"] == 0:
            broken_checks[str(size)] = check_broken(root, store)
            rows[-1]["broken_ok"] = (broken_checks[str(size)]["kept_plus_skipped_equals_manifest"] and
                                     broken_checks[str(size)]["broken_all_skipped"] and
                                     broken_checks[str(size)]["good_all_kept"])

    # ---- targets, table, files
    def get(size, what, key):
        for r in rows:
            if r["size"] == size and r["measurement"] == what:
                return r.get(key)
        return None

    targets = {"store_vs_memory_clips_per_s": {}, "epoch_step_ratio_store_over_memory": {}}
    targets["store_workers0_vs_memory_clips_per_s"] = {}
    for size in sizes:
        mem = get(size, "features in-memory", "clips_per_s")
        for key, what in (("store_vs_memory_clips_per_s", "features store"),
                          ("store_workers0_vs_memory_clips_per_s", "features store --workers 0")):
            s = get(size, what, "clips_per_s")
            if s and mem:
                targets[key][str(size)] = {"ratio": s / mem, "target": ">= 0.8", "met": s / mem >= 0.8}
        inside, mem_inside = get(size, "features store in process", "build_clips_per_s"), \
            get(size, "features in-memory", "extract_clips_per_s")
        if inside and mem_inside:
            targets.setdefault("store_vs_memory_clips_per_s_in_process", {})[str(size)] = {
                "ratio": inside / mem_inside, "target": ">= 0.8", "met": inside / mem_inside >= 0.8}
        a, b = get(size, "expert epoch store", "step_ms"), get(size, "expert epoch memory", "step_ms")
        if a and b:
            targets["epoch_step_ratio_store_over_memory"][str(size)] = {"ratio": a / b, "target": "<= 1.15",
                                                                        "met": a / b <= 1.15}
    first, last = sizes[0], sizes[-1]
    r_first, r_last = get(first, "features store", "peak_rss_mb"), get(last, "features store", "peak_rss_mb")
    w_first, w_last = get(first, "features store --workers 0", "peak_rss_mb"), get(last, "features store --workers 0",
                                                                                  "peak_rss_mb")
    if w_first and w_last:
        targets["store_workers0_peak_rss_growth"] = {"from": first, "to": last, "ratio": w_last / w_first,
                                                     "mb_largest": w_last, "target": "<= 1.2 and <= 1536 MB",
                                                     "met": w_last / w_first <= 1.2 and w_last <= 1536}
    if r_first and r_last:
        targets["store_peak_rss_largest_mb"] = {"size": last, "mb": r_last, "target": "<= 1536 (1.5 GB)",
                                                "met": r_last <= 1536}
        targets["store_peak_rss_growth"] = {"from": first, "to": last, "ratio": r_last / r_first,
                                            "target": "<= 1.2", "met": r_last / r_first <= 1.2}
    print_table(rows, ["size", "measurement", "wall_s", "clips_per_s", "peak_rss_mb", "peak_pss_mb", "main_hwm_mb",
                       "step_ms", "load_s", "iteration_s", "outside_iteration_s", "store_mb", "rc"])
    print(json.dumps(targets, indent=1))
    if broken_checks:
        print(json.dumps(broken_checks, indent=1))
    extra = {"package": package, "machine_at_start": machine_start, "package_changes_at_start": package_changes,
             "sizes": sizes, "threads": t, "max_steps": args.max_steps, "work": str(work), "corpora": corpora,
             "targets": targets, "broken_checks": broken_checks, "details": details,
             "total_s": time.time() - started,
             "notes": ("peak_rss_mb: the sum of VmRSS over the measured process and its descendants (DataLoader "
                       "workers, torchrun ranks), polled every 0.1 s; peak_anon_mb the same for RssAnon (excludes "
                       "file-backed pages such as memory-mapped shards); peak_pss_mb the same for Pss (smaps_rollup: pages shared by "
                       "forked processes counted once in all); main_hwm_mb: the main process's VmHWM. "
                       "clips/s = corpus size / wall seconds of the whole command (interpreter start included). "
                       "Expert epoch: at most max_steps steps (the first max_steps x 64 training clips), after 3 "
                       "untimed warm-up steps; epoch_rss_mb = the child's VmHWM during the epoch only "
                       "(reset through /proc/self/clear_refs). The machine is shared: see load_before/after.")}
    path = write_json("corpus_scale", rows, extra, out_dir=out_dir)
    print("wrote", path)
    plot(rows, sizes, Path(out_dir) / "corpus_scale.png")
    return 0


def plot(rows: List[Dict[str, object]], sizes: List[int], path: Path) -> None:
    from ddfad_fast.apps.report import pyplot
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for what, color, marker in (("features store", "C0", "o"), ("features store --workers 0", "C2", "^"),
                                ("features in-memory", "C1", "s")):
        pts = [r for r in rows if r["measurement"] == what and r.get("rc") == 0]
        if not pts:
            continue
        xs = [r["size"] for r in pts]
        ax1.plot(xs, [r["peak_rss_mb"] for r in pts], "-", color=color, marker=marker,
                 label=f"{what}: sum of VmRSS (process tree)")
        ax1.plot(xs, [r["peak_pss_mb"] for r in pts], ":", color=color, marker=marker, mfc="none",
                 label=f"{what}: sum of Pss")
        ax2.plot(xs, [r["clips_per_s"] for r in pts], "-", color=color, marker=marker, label=what)
    ax1.axhline(1536, color="grey", lw=0.8, ls=":", label="1.5 GB target")
    for ax, title, unit in ((ax1, "peak memory of ddfad features", "MB"), (ax2, "throughput", "clips / s")):
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{s // 1000}k" if s >= 1000 else str(s) for s in sizes])
        ax.set_xlabel("corpus size (1 s, 16 kHz clips; speech16k features)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(ScalarFormatter())
    ax1.yaxis.set_minor_formatter(NullFormatter())
    ax2.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main())
