"""``ddfad nas --run RUN``: rank a space of architectures by training them on a distilled set.

Takes a finished ``ddfad run`` folder (its data, preset and the distilled set of ``--cpc``). Each architecture
of :func:`ddfad_fast.apps.nas.search_space` (48 ConvNets) is trained once on (a) the distilled set for
``--proxy-steps`` SGD steps at its learned step size, (b) a random real subset of the same size for the same
steps, (c) the full training split for ``--full-epochs`` epochs (the ground truth). Rankings use validation
accuracy (proxy nets are tested on the validation split only); the report gives each proxy's Spearman correlation with the ground truth, the architecture it picks
and that architecture's full-data test accuracy against the true best's, and each search's seconds.
Resumable: every (architecture, proxy) result is saved as it finishes (OUT/nas.json); ``--resume`` keeps
them. Writes OUT/report.md, report.json and proxy_vs_full.png (default OUT: RUN/nas).
"""
from __future__ import annotations

import argparse
from pathlib import Path


HELP = "neural architecture search: rank architectures on the distilled set vs random real clips vs full data"


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


def main(args: argparse.Namespace) -> int:
    from ..apps.nas import run_nas
    report = run_nas(args.run, cpc=args.cpc, proxy_steps=args.proxy_steps, full_epochs=args.full_epochs,
                     limit=args.limit, out=args.out, resume=args.resume, device=args.device, progress=not args.quiet)
    out = args.out or args.run / "nas"
    for proxy, row in report["summary"]["proxies"].items():
        print(f"{proxy:9s}: Spearman {row['spearman']:.3f}, picks {row['pick']} "
              f"({100 * row['pick_test']:.2f} % full-data test), {row['seconds']:.0f} s ({row['speedup']:.1f}x faster)")
    s = report["summary"]
    print(f"full data: best {s['true_best']} ({100 * s['true_best_test']:.2f} %), {s['truth_seconds']:.0f} s")
    print(f"report: {out / 'report.md'}")
    return 0
