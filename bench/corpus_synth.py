"""The synthetic corpora of bench/corpus_scale.py: one-second 16 kHz clips made from FSDD (``make_corpus``).

A recording of the class's digit is resampled to 16 kHz, pitch/formant-shifted by the class's band (overlap-add
time stretch by ``p`` then linear-interpolation varispeed by ``p``: pitch and formants x ``p``, duration kept),
time-stretched by a seeded speed factor in [0.85, 1.15] (pitch kept), placed at a random offset in 1 s (cropped
when longer), mixed with white noise at a random SNR (5-30 dB), scaled by a random gain (-20..-1 dB of full
scale) and given a small random DC offset. Written as PCM_16 WAV by two processes.

Class rule (35 classes): class ``k`` = digit ``k % 10``, pitch band ``k // 10`` (named ``d{digit}_p{band}``),
bands x 0.72 / 0.90 / 1.12 / 1.40 (each x U(0.97, 1.03)); band 3 exists for digits 0-4 only. Class sizes are
drawn with a mild seeded imbalance (weights exp(N(0, 0.15))). Split: clips made from FSDD recordings with index
0-4 (FSDD's own test recordings, 10 %) are "test", the rest "train"; the speaker column is the FSDD speaker.
Layout: ``root/<class>/c<i>.wav``, ``root/manifest.csv`` (path,label,split,speaker; relative paths),
``root/corpus.json`` (the settings: a corpus with the same ones is reused) and, with ``broken_fraction`` > 0,
``root/broken.txt`` (path<TAB>kind) of the files made unusable: garbage bytes, empty, cut inside the header,
cut inside the data chunk, float WAV with NaN samples (they stay in the manifest: the store must skip them).
"""
from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FSDD = Path(os.environ.get("DDFAD_FSDD_DIR", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))
SR = 16000
BANDS = (0.72, 0.90, 1.12, 1.40)
CORPUS_VERSION = 1
BROKEN_KINDS = ("garbage", "empty", "truncated_header", "truncated_data", "nan_float")


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
    cache.parent.mkdir(parents=True, exist_ok=True)
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
