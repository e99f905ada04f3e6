"""Neural architecture search on distilled audio: DDFAD's second use of a distilled set.

Every architecture of a search space is trained on a proxy — the distilled set, or a random real subset of
the same size, both for a short budget — and on the full training data (the ground truth); a proxy is good
when it ranks the architectures as full-data training does. Rankings use the validation split carved from
the training clips; the reported accuracies are on the test split.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..config import ModelConfig
from ..errors import ParameterError
from ..io import atomic_write_json, atomic_write_text, saved_progress

DEPTHS = (1, 2, 3, 4)
WIDTHS = (16, 32, 64)
NORMS = ("instancenorm", "none")
POOLINGS = ("avgpool", "maxpool")


def search_space() -> List[ModelConfig]:
    """The default space: ConvNets of depth 1-4, width 16/32/64, instance norm or none, average or max
    pooling (48 architectures)."""
    return [ModelConfig(name="convnet", width=w, depth=d, norm=n, pooling=p)
            for d, w, n, p in itertools.product(DEPTHS, WIDTHS, NORMS, POOLINGS)]


def arch_name(model: ModelConfig) -> str:
    return f"{model.name}-d{model.depth}-w{model.width}-{model.norm}-{model.pooling}"


def ranks(values: Sequence[float]) -> List[float]:
    """Ranks 1..n of ``values`` (ties share their average rank)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (Pearson's of their average ranks); NaN when either
    is constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ParameterError(f"need two sequences of the same length >= 2, got {len(a)} and {len(b)}")
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return float("nan") if va == 0 or vb == 0 else cov / (va * vb) ** 0.5


def summarize(results: Dict[str, Dict[str, dict]], proxies: Sequence[str], truth: str = "full") -> dict:
    """Per proxy: Spearman correlation of its validation accuracies with the ground truth's over the
    architectures both have, the architecture it picks (best validation accuracy), that architecture's
    ground-truth test accuracy against the true best's, and the search seconds."""
    archs = [a for a in results if truth in results[a] and all(p in results[a] for p in proxies)]
    if len(archs) < 2:
        raise ParameterError(f"need at least two architectures with every result, got {len(archs)}")
    true_val = [results[a][truth]["val_mean"] for a in archs]
    best = archs[max(range(len(archs)), key=lambda i: true_val[i])]
    out = {"architectures": len(archs), "true_best": best, "true_best_test": results[best][truth]["mean"],
           "truth_seconds": sum(results[a][truth]["seconds"] for a in archs), "proxies": {}}
    for proxy in proxies:
        val = [results[a][proxy]["val_mean"] for a in archs]
        pick = archs[max(range(len(archs)), key=lambda i: val[i])]
        seconds = sum(results[a][proxy]["seconds"] for a in archs)
        out["proxies"][proxy] = {"spearman": spearman(val, true_val), "pick": pick,
                                 "pick_test": results[pick][truth]["mean"], "seconds": seconds,
                                 "speedup": out["truth_seconds"] / seconds if seconds > 0 else float("inf")}
    return out


# ----------------------------------------------------------------------------- the command's job

RESULTS_NAME = "nas.json"


PROXIES = ("distilled", "random")


def _markdown(report: dict) -> str:
    s = report["summary"]
    lines = [f"# Architecture search ({s['architectures']} architectures)", "",
             f"Run: `{report['run']}`, distilled set CPC {report['cpc']}; proxies train {report['proxy_steps']} SGD "
             f"steps, the ground truth {report['full_epochs']} epochs on the full training split. Rankings by "
             "validation accuracy; accuracies of picked architectures on the test split (full-data training).", "",
             "| proxy | Spearman vs full data | picks | its full-data test accuracy | search time | speed-up |",
             "|---|---:|---|---:|---:|---:|"]
    for proxy, row in s["proxies"].items():
        lines.append(f"| {proxy} | {row['spearman']:.3f} | {row['pick']} | {100 * row['pick_test']:.2f} % | "
                     f"{row['seconds']:.0f} s | {row['speedup']:.1f}x |")
    lines += [f"| full data (ground truth) | 1 | {s['true_best']} | {100 * s['true_best_test']:.2f} % | "
              f"{s['truth_seconds']:.0f} s | 1x |", "", "## Per architecture (validation accuracy, %)", "",
              "| architecture | distilled | random | full data | full data (test) |", "|---|---:|---:|---:|---:|"]
    for arch, row in report["results"].items():
        cells = [f"{100 * row[k]['val_mean']:.1f}" if k in row else "-" for k in ("distilled", "random", "full")]
        test = f"{100 * row['full']['mean']:.1f}" if "full" in row else "-"
        lines.append(f"| {arch} | " + " | ".join(cells) + f" | {test} |")
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
    from .report import pyplot, save_figure
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(PROXIES), figsize=(5 * len(PROXIES), 4), squeeze=False)
    rows = [r for r in report["results"].values() if all(k in r for k in PROXIES + ("full",))]
    for ax, proxy in zip(axes[0], PROXIES):
        ax.scatter([100 * r[proxy]["val_mean"] for r in rows], [100 * r["full"]["val_mean"] for r in rows], s=18)
        rho = report["summary"]["proxies"][proxy]["spearman"]
        ax.set(title=f"{proxy} (Spearman {rho:.2f})", xlabel=f"{proxy} proxy: validation accuracy (%)",
               ylabel="full data: validation accuracy (%)")
        ax.grid(alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def run_nas(run_dir: Path, cpc: Optional[int] = None, proxy_steps: int = 25, full_epochs: int = 15,
            limit: Optional[int] = None, out: Optional[Path] = None, resume: bool = False,
            device: Union[str, torch.device] = "cpu", progress: bool = True) -> dict:
    """Architecture search on a finished ``ddfad run`` folder (what ``ddfad nas`` runs): every architecture of
    :func:`search_space` (the first ``limit``) trained on the distilled set and on a random real subset for
    ``proxy_steps`` steps and on the full data for ``full_epochs`` epochs; every result saved as it finishes
    (``resume`` keeps them). Writes report.json, report.md and proxy_vs_full.png to ``out`` (default RUN/nas)
    and returns the report dict."""
    from ..train.evaluate import evaluate_training_set, random_real_subset
    from .run import finished_run, load_distilled, run_split

    run_dir = Path(run_dir)
    run, preset, cpc = finished_run(run_dir, cpc)
    if proxy_steps < 1 or full_epochs < 1:
        raise ParameterError(f"--proxy-steps and --full-epochs must be >= 1, got {proxy_steps}, {full_epochs}")
    if limit is not None and limit < 2:
        raise ParameterError(f"--limit must be >= 2 (the search ranks architectures), got {limit}")
    space = search_space()[:limit] if limit is not None else search_space()
    if len(space) < 2:
        raise ParameterError("the search needs at least two architectures")
    out = out or run_dir / "nas"
    results_file = out / RESULTS_NAME
    settings = {"run": str(run_dir), "cpc": cpc, "proxy_steps": proxy_steps, "full_epochs": full_epochs}
    results: dict = (saved_progress(results_file, settings, resume) or {}).get("results", {})
    out.mkdir(parents=True, exist_ok=True)

    split = run_split(run_dir, run, preset, device)
    if split.x_val is None:
        raise ParameterError("the run has no validation split to rank architectures on")
    distilled = load_distilled(run_dir / f"cpc{cpc}" / "distilled.pt")
    sets = {"distilled": (distilled["features"].to(device), distilled["targets"].to(device),
                          distilled["alpha"]),
            "random": (*random_real_subset(split.x_train, split.y_train, cpc, seed=preset.eval.seed), None)}
    proxy_config = preset.eval.replace(num_nets=1, steps=proxy_steps, compile=False)
    full_config = preset.eval_full.replace(num_nets=1, epochs=full_epochs, steps=None, compile=False)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(space), desc="architectures", unit="arch")
    for model in space:
        name = arch_name(model)
        row = results.setdefault(name, {})
        jobs = [(p, *sets[p], proxy_config) for p in PROXIES] + [
            ("full", split.x_train, split.y_train, None, full_config)]
        for key, xs, ys, lr, config in jobs:
            if key in row:
                continue
            start = time.perf_counter()
            if key == "full":        # the ground truth: validation accuracy ranks, test accuracy is reported
                r = evaluate_training_set(xs, ys, split.x_test, split.y_test, model, config, lr=lr,
                                          x_val=split.x_val, y_val=split.y_val)
                row[key] = {"mean": r["mean"], "val_mean": r["val_mean"]}
            else:                    # a proxy only ranks: its nets are tested on the validation split alone
                r = evaluate_training_set(xs, ys, split.x_val, split.y_val, model, config, lr=lr)
                row[key] = {"val_mean": r["mean"]}
            row[key]["seconds"] = time.perf_counter() - start
            atomic_write_json(results_file, {"settings": settings, "results": results})
        if bar is not None:
            bar.set_postfix(arch=name, full_val=f"{row['full']['val_mean']:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    report = dict(settings, results={arch_name(m): results[arch_name(m)] for m in space},
                  summary=summarize({arch_name(m): results[arch_name(m)] for m in space}, PROXIES),
                  reported_split="test (rankings: validation)")
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", _markdown(report))
    _plot(report, out / "proxy_vs_full.png")
    return report
