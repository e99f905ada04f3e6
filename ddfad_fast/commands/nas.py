"""``ddfad nas --run RUN``: rank a space of architectures by training them on a distilled set.

Takes a finished ``ddfad run`` folder (its data, preset and the distilled set of ``--cpc``). Each architecture
of :func:`ddfad_fast.nas.search_space` (48 ConvNets) is trained once on (a) the distilled set for
``--proxy-steps`` SGD steps at its learned step size, (b) a random real subset of the same size for the same
steps, (c) the full training split for ``--full-epochs`` epochs (the ground truth). Rankings use validation
accuracy (proxy nets are tested on the validation split only); the report gives each proxy's Spearman correlation with the ground truth, the architecture it picks
and that architecture's full-data test accuracy against the true best's, and each search's seconds.
Resumable: every (architecture, proxy) result is saved as it finishes (OUT/nas.json); ``--resume`` keeps
them. Writes OUT/report.md, report.json and proxy_vs_full.png (default OUT: RUN/nas).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import ParameterError

HELP = "neural architecture search: rank architectures on the distilled set vs random real clips vs full data"
RESULTS_NAME = "nas.json"
PROXIES = ("distilled", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="a finished `ddfad run` folder")
    parser.add_argument("--cpc", type=int, default=None, help="the distilled set to use (default: the largest)")
    parser.add_argument("--proxy-steps", type=int, default=25,
                        help="SGD steps on each proxy set (default 25: about the distillation's student steps)")
    parser.add_argument("--full-epochs", type=int, default=15, help="epochs on the full training split (default 15)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N architectures of the space")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/nas)")
    parser.add_argument("--resume", action="store_true", help="keep the results already in OUT/nas.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


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
    from ..report import _save_figure, pyplot
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
    _save_figure(fig, path)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_training_set, random_real_subset
    from ..io import atomic_write_json, atomic_write_text
    from ..nas import arch_name, search_space, summarize
    from . import saved_progress
    from .run import finished_run, load_distilled, run_split

    run, preset, cpc = finished_run(args.run, args.cpc)
    if args.proxy_steps < 1 or args.full_epochs < 1:
        raise ParameterError(f"--proxy-steps and --full-epochs must be >= 1, got {args.proxy_steps}, {args.full_epochs}")
    space = search_space()[:args.limit] if args.limit else search_space()
    if len(space) < 2:
        raise ParameterError("the search needs at least two architectures")
    out = args.out or args.run / "nas"
    results_file = out / RESULTS_NAME
    settings = {"run": str(args.run), "cpc": cpc, "proxy_steps": args.proxy_steps, "full_epochs": args.full_epochs}
    results: dict = (saved_progress(results_file, settings, args.resume) or {}).get("results", {})
    out.mkdir(parents=True, exist_ok=True)

    split = run_split(args.run, run, preset, args.device)
    if split.x_val is None:
        raise ParameterError("the run has no validation split to rank architectures on")
    distilled = load_distilled(args.run / f"cpc{cpc}" / "distilled.pt")
    sets = {"distilled": (distilled["features"].to(args.device), distilled["targets"].to(args.device),
                          distilled["alpha"]),
            "random": (*random_real_subset(split.x_train, split.y_train, cpc, seed=preset.eval.seed), None)}
    proxy_config = preset.eval.replace(num_nets=1, steps=args.proxy_steps, compile=False)
    full_config = preset.eval_full.replace(num_nets=1, epochs=args.full_epochs, steps=None, compile=False)
    bar = None
    if not args.quiet:
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
    for proxy, row in report["summary"]["proxies"].items():
        print(f"{proxy:9s}: Spearman {row['spearman']:.3f}, picks {row['pick']} "
              f"({100 * row['pick_test']:.2f} % full-data test), {row['seconds']:.0f} s ({row['speedup']:.1f}x faster)")
    s = report["summary"]
    print(f"full data: best {s['true_best']} ({100 * s['true_best_test']:.2f} %), {s['truth_seconds']:.0f} s")
    print(f"report: {out / 'report.md'}")
    return 0
