"""The report of a `ddfad run`: report.json, report.md, accuracy_vs_cpc.png, distilled_grid.png.

``results`` (what :func:`write_report` consumes) is a plain dict::

    {"preset": {...}, "data": str, "cpcs": [1, 10], "classes": [...], "num_train": N, "num_val": V,
     "num_test": M, "accuracy": {"cpc10": {"distilled": {MODEL: eval dict}, "random": {...},
                                           "herding": {...}},
                                 "full": {MODEL: eval dict}},
     "alpha": {"cpc10": float}, "iterations": {"cpc10": int}, "stage_seconds": {stage: seconds},
     "threads": int, "device": str, "machine": {"git_commit", "date", "load_average_1_5_15", versions, ...},
     "skipped": [[file, reason], ...], "audio": {"cpc10": "cpc10/audio/manifest.csv"},
     "failures": [{"stage": str, "error": str}, ...]}

where an eval dict is the return value of :func:`ddfad_fast.train.evaluate.evaluate_training_set` (test
accuracies, and validation accuracies under ``val_*``; its per-clip ``test_correct`` stays in eval.json).
Rows ``random_soft`` / ``herding_soft``: the same clips with the experts' soft labels (runs whose distilled sets
learn soft labels). ``results`` also holds the yardstick of :func:`ddfad_fast.apps.stats.yardstick`:
``"gap_closed": {"cpcN": {MODEL: float or None}}`` and ``"comparisons": {"cpcN": {"distilled_vs_herding":
{"diff_pts", "ci95_pts": [lo, hi], "method", ...}, "distilled_vs_random": {...}}}``, shown in the table
"Against the baselines". ``machine`` is :func:`ddfad_fast.provenance.provenance` at the run's start (reports
made before it was added hold ``provenance``, its first four keys). The tables report the test split; the
validation table is what any choice may look at.
Plots need matplotlib (the ``report`` extra); without it they are skipped with a note in report.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

from torch import Tensor

from ..io import atomic_write, atomic_write_json, atomic_write_text


SETS = (("distilled", "distilled"), ("random", "random real"), ("herding", "herding coreset"),
        ("random_soft", "random real, expert soft labels"), ("herding_soft", "herding coreset, expert soft labels"))
YARDSTICK_HEAD = ("CPC", "model", "gap closed", "distilled − herding, points [95 % interval]",
                  "distilled − random, points [95 % interval]")


def pct(entry: Optional[dict], split: str = "test") -> str:
    if not entry:
        return "-"
    if split == "val":
        if "val_mean" not in entry:
            return "-"
        return f"{100 * entry['val_mean']:.2f} ± {100 * entry['val_std']:.2f}"
    return f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"


def _accuracy_table(results: dict, split: str) -> List[str]:
    present = [(key, title) for key, title in SETS
               if any(key in results["accuracy"].get(f"cpc{c}", {}) for c in results["cpcs"])]
    lines = ["| CPC | model | " + " | ".join(title for _, title in present) + " | full data | learned alpha |",
             "|---:|---|" + "---:|" * (len(present) + 2)]
    full = results["accuracy"].get("full", {})
    for cpc in results["cpcs"]:
        acc = results["accuracy"].get(f"cpc{cpc}", {})
        models = sorted(set().union(*(acc.get(key, {}).keys() for key, _ in present)) if present else set(),
                        key=lambda m: (m != "convnet", m))
        alpha = results.get("alpha", {}).get(f"cpc{cpc}")
        alpha_text = f"{alpha:.4g}" if alpha is not None else "-"
        for model in models:
            cells = [pct(acc.get(key, {}).get(model), split) for key, _ in present]
            lines.append(f"| {cpc} | {model} | " + " | ".join(cells) + f" | {pct(full.get(model), split)} | "
                         f"{alpha_text} |")
    return lines


def yardstick_rows(results: dict) -> List[List[str]]:
    """The rows of the yardstick table (columns :data:`YARDSTICK_HEAD`): per CPC and model, the gap closed
    (distilled − random) / (full − random) and the paired differences with their 95 % intervals. A baseline
    evaluated with an expert's soft labels (the distilled sets learn theirs) is marked "(soft labels)"."""
    from .stats import interval_text
    rows = []
    for cpc in results["cpcs"]:
        key = f"cpc{cpc}"
        gaps = results.get("gap_closed", {}).get(key, {})
        node = results.get("comparisons", {}).get(key, {})
        for model in sorted(gaps, key=lambda m: (m != "convnet", m)):
            found = node.get("by_model", {}).get(model)
            if found is None:
                found = {k: v for k, v in node.items() if isinstance(v, dict) and v.get("model") == model}
            cells = []
            for base in ("herding", "random"):
                c = found.get(f"distilled_vs_{base}")
                text = interval_text(c)
                if c and c.get("baseline", base).endswith("_soft"):
                    text += " (soft labels)"
                cells.append(text)
            gap = gaps[model]
            rows.append([str(cpc), model, "-" if gap is None else f"{100 * gap:.0f} %"] + cells)
    return rows


def _yardstick_table(results: dict) -> List[str]:
    rows = yardstick_rows(results)
    if not rows:
        return []
    method = next((c.get("method") for n in results.get("comparisons", {}).values() for c in n.values()
                   if isinstance(c, dict) and "method" in c), None)
    lines = ["", "## Against the baselines (test split)", "",
             "Gap closed: (distilled − random) / (full − random), of the mean accuracies (100 % = as good as the full "
             "data). Differences: the distilled set's accuracy minus the baseline's on the same test clips, with a "
             f"95 % interval ({method or 'paired bootstrap'}); an interval that excludes 0 calls the difference.",
             "", "| " + " | ".join(YARDSTICK_HEAD) + " |", "|---:|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _ablation_table(results: dict) -> List[str]:
    """Channel ablation at the cross-architecture CPC (test split, convnet): FD-MFCC vs fewer channels."""
    ablation = results["accuracy"].get("ablation")
    cpc = results.get("cross_cpc")
    if not ablation or cpc is None:
        return []
    names = {"ch1": "MFCC (1 channel)", "ch2": "MFCC + delta (2 channels)"}
    main = results["accuracy"].get(f"cpc{cpc}", {})
    rows = [("FD-MFCC (3 channels)", main.get("distilled", {}).get("convnet"), main.get("random", {}).get("convnet"),
             results["accuracy"].get("full", {}).get("convnet"))]
    for key in sorted(ablation, reverse=True):
        entry = ablation[key]
        rows.append((names.get(key, key), entry.get("distilled", {}).get("convnet"),
                     entry.get("random", {}).get("convnet"), entry.get("full", {}).get("convnet")))
    lines = ["", f"## Channel ablation (CPC {cpc}, convnet, test accuracy %)", "",
             "Each row has its own experts and distillation on the channels named.", "",
             "| features | distilled | random real | full data |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {pct(d)} | {pct(r)} | {pct(f)} |" for name, d, r, f in rows]
    return lines


def markdown(results: dict, notes: List[str]) -> str:
    """The report.md text: accuracy vs CPC per architecture (test, then validation), timings, config."""
    preset = results["preset"]
    nets = preset.get("eval", {}).get("num_nets")
    lines = ["# DDFAD run report", "",
             f"Data: `{results['data']}` ({len(results['classes'])} classes, {results['num_train']} train / "
             f"{results.get('num_val', 0)} validation / {results['num_test']} test clips). Preset: "
             f"`{preset['name']}`. Iterations: " +
             ", ".join(f"CPC {c}: {results.get('iterations', {}).get(f'cpc{c}', '-')}" for c in results["cpcs"]) + ".",
             "", "## Test accuracy (%) vs clips per class", "",
             f"Mean ± std over {nets} fresh nets per set (full data: {preset.get('eval_full', {}).get('num_nets')}), "
             "trained with the same protocol (augmentation included); the test split was used for nothing else.", ""]
    lines += _accuracy_table(results, "test")
    lines += _yardstick_table(results)
    if results.get("num_val"):
        lines += ["", "## Validation accuracy (%)", "",
                  "The split carved from the training clips, on which every choice of the preset was made.", ""]
        lines += _accuracy_table(results, "val")
    lines += _ablation_table(results)
    if results.get("failures"):
        lines += ["", "## Failed stages", ""]
        lines += [f"- **{f['stage']}**: {f['error']}" for f in results["failures"]]
    lines += ["", "## Wall time per stage", "", f"Threads: {results.get('threads', '-')}; device: {results.get('device', 'cpu')}; code: "
              f"{results.get('machine', results.get('provenance', {})).get('git_commit', '-')}.", "",
              "| stage | seconds |", "|---|---:|"]
    for stage, seconds in results.get("stage_seconds", {}).items():
        lines.append(f"| {stage} | {seconds:.1f} |")
    total = sum(results.get("stage_seconds", {}).values())
    lines.append(f"| total | {total:.1f} |")
    if results.get("audio"):
        lines += ["", "## Reconstructed audio", ""]
        lines += [f"- {key}: `{path}`" for key, path in results["audio"].items()]
    if results.get("skipped"):
        lines += ["", f"## Skipped files ({len(results['skipped'])})", ""]
        lines += [f"- `{f}`: {reason}" for f, reason in results["skipped"][:50]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Configuration", "", "```json"]
    lines += [json.dumps(results["preset"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only), or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def plot_accuracy(results: dict, path: Path) -> None:
    """accuracy_vs_cpc.png: distilled and random-real accuracy vs CPC, full data as a line, per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    cpcs = results["cpcs"]
    models = sorted({m for c in cpcs for m in results["accuracy"].get(f"cpc{c}", {}).get("distilled", {})})
    for model in models:
        for kind, style in (("distilled", "-o"), ("random", "--s"), ("herding", ":^")):
            pts = [(c, results["accuracy"][f"cpc{c}"][kind][model]) for c in cpcs
                   if model in results["accuracy"].get(f"cpc{c}", {}).get(kind, {})]
            if pts:
                ax.errorbar([p[0] for p in pts], [100 * p[1]["mean"] for p in pts],
                            yerr=[100 * p[1]["std"] for p in pts], fmt=style, capsize=3, label=f"{model} {kind}")
        full = results["accuracy"].get("full", {}).get(model)
        if full:
            ax.axhline(100 * full["mean"], linestyle=":", color="gray", label=f"{model} full data")
    ax.set_xscale("log")
    ax.set_xlabel("clips per class")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def plot_distilled_grid(features: Tensor, labels: Tensor, class_names: List[str], path: Path,
                        per_class: int = 5) -> None:
    """distilled_grid.png: the MFCC channel of up to ``per_class`` distilled samples (rows: classes).

    Each coefficient is shown standardised over all samples and frames of the grid (one shared colour
    scale), so that c0, the log energy, does not drown out the other coefficients.
    """
    plt = pyplot()
    n_cols = max(1, min(per_class, max(int((labels == c).sum()) for c in range(len(class_names)))))
    fig, axes = plt.subplots(len(class_names), n_cols, figsize=(1.8 * n_cols, 0.9 * len(class_names)),
                             squeeze=False)
    mfcc = features[:, 0].detach().float().cpu()                                       # (N, F, T)
    mean, std = mfcc.mean(dim=(0, 2), keepdim=True), mfcc.std(dim=(0, 2), keepdim=True)
    mfcc = ((mfcc - mean) / std.clamp_min(1e-6)).numpy()
    for c, name in enumerate(class_names):
        idx = (labels == c).nonzero().flatten()[:n_cols]
        for j in range(n_cols):
            ax = axes[c][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(idx):
                ax.imshow(mfcc[idx[j]], origin="lower", aspect="auto", cmap="magma", vmin=-3, vmax=3)
            if j == 0:
                ax.set_ylabel(name, rotation=0, labelpad=12)
    save_figure(fig, path)
    plt.close(fig)


def write_report(out_dir: Path, results: dict, distilled: Optional[Dict[int, tuple]] = None) -> List[Path]:
    """Write report.json and report.md (and the PNGs when matplotlib is installed) into ``out_dir``.

    ``distilled``: {cpc: (features (N, 3, F, T), labels (N,))} for the sample grid of the largest CPC.
    Returns the paths written.
    """
    out_dir = Path(out_dir)
    notes: List[str] = []
    written = []
    plots = pyplot() is not None
    if not plots:
        notes.append("plots skipped: matplotlib is not installed (pip install 'ddfad_fast[report]')")
    if plots:
        figures = [("accuracy_vs_cpc.png", lambda path: plot_accuracy(results, path))]
        if distilled:
            feats, labels = distilled[max(distilled)]
            figures.append(("distilled_grid.png",
                            lambda path: plot_distilled_grid(feats, labels, results["classes"], path)))
        for name, draw in figures:
            try:                       # a plot that fails is a note, not a lost report
                draw(out_dir / name)
                written.append(out_dir / name)
            except Exception as exc:
                notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
                results.setdefault("failures", []).append({"stage": f"plot {name}",
                                                           "error": f"{type(exc).__name__}: {exc}"})
    atomic_write_json(out_dir / "report.json", results)
    atomic_write_text(out_dir / "report.md", markdown(results, notes))
    return [out_dir / "report.json", out_dir / "report.md"] + written
