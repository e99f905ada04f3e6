"""Neural architecture search on distilled audio: DDFAD's second use of a distilled set.

Every architecture of a search space is trained on a proxy — the distilled set, or a random real subset of
the same size, both for a short budget — and on the full training data (the ground truth); a proxy is good
when it ranks the architectures as full-data training does. Rankings use the validation split carved from
the training clips; the reported accuracies are on the test split.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Sequence

from .config import ModelConfig
from .errors import ParameterError

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
