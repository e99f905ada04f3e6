"""The measurements of bench/corpus_scale.py: each measured command runs in its own process (``run_measured``:
wall time, and peak memory as the sum of VmRSS and of RssAnon over the process and its descendants polled every
0.1 s, plus the main process's VmHWM); the in-process measurements (``CHILDREN``: extract_features,
build_store, an expert epoch, expert training, a distillation iteration, the learnability check) run as
``corpus_scale.py --child KIND JSON`` and print one ``RESULT`` line; plus the store checks (``measure_features``,
``link_cache``, ``check_broken``).
"""
from __future__ import annotations

import csv
import filecmp
import json
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
SCRIPT = HERE / "corpus_scale.py"
MB = 2 ** 20
RUN_DIR = Path(tempfile.gettempdir())      # working folder of the measured processes (corpus_scale.main sets --work)


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
    from ddfad_fast.train.sgd import sgd_epoch, training_stepper
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
    from ddfad_fast.train.sgd import accuracy, sgd_epoch
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
    cmd = [sys.executable, str(SCRIPT), "--child", kind, json.dumps(a)]
    return cmd


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
