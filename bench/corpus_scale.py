"""Feature store vs in-memory features on corpora of 10k / 30k / 100k one-second 16 kHz clips (speech16k).

No download: each corpus is generated from FSDD (``make_corpus``, bench/corpus_synth.py): a recording of the
class's digit is resampled to 16 kHz, pitch/formant-shifted by the class's band (overlap-add time stretch by
``p`` then linear-interpolation varispeed by ``p``: pitch and formants x ``p``, duration kept), time-stretched
by a seeded speed factor in [0.85, 1.15] (pitch kept), placed at a random offset in 1 s (cropped when longer),
mixed with white noise at a random SNR (5-30 dB), scaled by a random gain (-20..-1 dB of full scale) and given
a small random DC offset. Written as PCM_16 WAV by two processes.

Class rule (35 classes): class ``k`` = digit ``k % 10``, pitch band ``k // 10`` (named ``d{digit}_p{band}``),
bands x 0.72 / 0.90 / 1.12 / 1.40 (each x U(0.97, 1.03)); band 3 exists for digits 0-4 only. Class sizes
are drawn with a mild seeded imbalance (weights exp(N(0, 0.15))). Split: clips made from FSDD recordings
with index 0-4 (FSDD's own test recordings, 10 %) are "test", the rest "train"; the speaker column is
the FSDD speaker. Layout: ``root/<class>/c<i>.wav``, ``root/manifest.csv`` (path,label,split,speaker;
relative paths), ``root/corpus.json`` (the settings: a corpus with the same ones is reused) and, with
``broken_fraction`` > 0, ``root/broken.txt`` (path<TAB>kind) of the files made unusable: garbage bytes,
empty, cut inside the header, cut inside the data chunk, float WAV with NaN samples (they stay in the
manifest: the store must skip them).

Measurements per size (bench/corpus_measure.py), each in its own process, peak memory = the sum of VmRSS (and
of RssAnon) over the process and its descendants polled every 0.1 s, plus the main process's VmHWM:

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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
OUT_DIR = HERE / "results" / "corpus_scale"

import corpus_measure as measure  # noqa: E402
from corpus_measure import (CHILDREN, MB, check_broken, child, folder_bytes, free_port,  # noqa: E402
                            link_cache, measure_features, run_measured, same_files)
from corpus_synth import make_corpus  # noqa: E402


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
    measure.RUN_DIR = work          # measured processes start here: "-m ddfad_fast.cli" in the repository would
    found = subprocess.run([sys.executable, "-c", "import ddfad_fast; print(ddfad_fast.__file__)"], cwd=work,
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
