"""The report's yardstick: the gap closed, and a paired bootstrap interval between two rows of a report.

Every row of a report (distilled, herding coreset, random real clips) is evaluated by the same number of fresh
nets, net i from the same seed, on the same test clips; each evaluation keeps which clips each net got right
(``"test_correct"``: one string of '0'/'1' per net, in test-clip order). Two rows are then compared *paired*:
the accuracy difference, and a percentile interval from resampling the test clips and the evaluation nets with
replacement, the same resampled clips and net indices for both rows. Sampling the clips measures the noise of
a finite test split (±0.7 points at 98 % on 300 clips), sampling the nets the noise of training.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import ParameterError

RESAMPLES = 2000
SEED = 0
CHUNK = 250                 # resamples drawn at once (memory: CHUNK x clips indices)


def gap_closed(distilled: Optional[float], random: Optional[float], full: Optional[float]) -> Optional[float]:
    """(distilled − random) / (full − random): 0 at the random-real accuracy, 1 at the full-data accuracy.

    Parameters
    ----------
    distilled, random, full : float or None
        Mean accuracies (any one unit) of the distilled set, random real clips of the same size, full data.

    Returns
    -------
    float or None
        None when an accuracy is missing (or not finite) or ``full == random``. Above 1 when the distilled set
        beats the full data; negative when it is below the random clips.
    """
    values = (distilled, random, full)
    if any(v is None or not math.isfinite(float(v)) for v in values) or float(full) == float(random):
        return None
    return (float(distilled) - float(random)) / (float(full) - float(random))


def correctness(entry: Optional[dict]) -> Optional[Tensor]:
    """The per-net, per-clip correctness of an evaluation result: (nets, clips) float64 of 0/1, or None when the
    result keeps none (``"test_correct"`` absent, e.g. an evaluation of an earlier release)."""
    if not entry or not entry.get("test_correct"):
        return None
    rows = entry["test_correct"]
    if len({len(r) for r in rows}) != 1 or any(set(r) - {"0", "1"} for r in rows):
        raise ParameterError("test_correct must be strings of '0'/'1' of one length, one per evaluation net")
    return torch.tensor([[c == "1" for c in r] for r in rows], dtype=torch.float64)


def _counts(index: Tensor, size: int) -> Tensor:
    """How often each of ``size`` items occurs in each row of ``index`` (R, n): (R, size) float64."""
    out = torch.zeros(index.shape[0], size, dtype=torch.float64)
    return out.scatter_add_(1, index, torch.ones(index.shape, dtype=torch.float64))


def bootstrap_differences(a: Tensor, b: Tensor, resamples: int = RESAMPLES, seed: int = SEED,
                          chunk: int = CHUNK) -> Tensor:
    """Resampled accuracy differences mean(a) − mean(b), paired over test clips and evaluation nets.

    Parameters
    ----------
    a, b : Tensor
        (nets_a, clips) and (nets_b, clips) correctness (1 right, 0 wrong) of the two rows on the same clips.
    resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the one ``torch.Generator`` the draws come from. Per chunk of ``chunk`` resamples it draws, in
        this order, clip indices (chunk, clips), then net indices (chunk, nets_a); the same net indices serve
        ``b`` when nets_a == nets_b (net i of both rows shares a seed), else ``b``'s are drawn next.
    chunk : int
        Resamples drawn at once.

    Returns
    -------
    Tensor
        (resamples,) float64 differences, in accuracy units (fractions).

    Raises
    ------
    ParameterError
        Shapes that do not pair, empty rows, resamples or chunk < 1.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or 0 in a.shape or 0 in b.shape:
        raise ParameterError(f"need (nets, clips) correctness of both rows on the same clips, got "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
    if resamples < 1 or chunk < 1:
        raise ParameterError(f"resamples and chunk must be >= 1, got {resamples}, {chunk}")
    (n_a, m), n_b = a.shape, b.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        clip_w = _counts(torch.randint(m, (r, m), generator=gen), m)
        net_a = _counts(torch.randint(n_a, (r, n_a), generator=gen), n_a)
        net_b = net_a if n_a == n_b else _counts(torch.randint(n_b, (r, n_b), generator=gen), n_b)
        mean_a = ((net_a @ a) * clip_w).sum(1) / (n_a * m)
        mean_b = ((net_b @ b) * clip_w).sum(1) / (n_b * m)
        out.append(mean_a - mean_b)
    return torch.cat(out)


def paired_bootstrap(a: Tensor, b: Tensor, resamples: int = RESAMPLES, seed: int = SEED) -> Dict[str, object]:
    """The accuracy difference of row ``a`` over row ``b`` in points, with a 95 % percentile interval.

    Parameters
    ----------
    a, b : Tensor
        (nets, clips) correctness of the two rows (see :func:`bootstrap_differences`).
    resamples, seed : int
        Bootstrap resamples and seed (the same seed gives the same interval).

    Returns
    -------
    dict
        ``{"diff_pts": float, "ci95_pts": [lo, hi], "method": str, "nets": [nets_a, nets_b], "clips": int}``;
        points are percentages of the test clips.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    diffs = bootstrap_differences(a, b, resamples, seed)
    lo, hi = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"diff_pts": 100 * float(a.mean() - b.mean()), "ci95_pts": [100 * lo, 100 * hi],
            "method": f"paired bootstrap over test clips and evaluation nets, B={resamples}, seed {seed}",
            "nets": [int(a.shape[0]), int(b.shape[0])], "clips": int(a.shape[1])}


def compare(entry_a: Optional[dict], entry_b: Optional[dict], resamples: int = RESAMPLES,
            seed: int = SEED) -> Optional[dict]:
    """:func:`paired_bootstrap` of two evaluation results; None when either keeps no per-clip correctness or
    they were tested on different clips."""
    a, b = correctness(entry_a), correctness(entry_b)
    if a is None or b is None or a.shape[1] != b.shape[1]:
        return None
    return paired_bootstrap(a, b, resamples, seed)


def yardstick(accuracy: dict, cpcs: Sequence[int], models: Sequence[str], soft: bool = False,
              resamples: int = RESAMPLES, seed: int = SEED) -> Dict[str, dict]:
    """The gap closed and the paired comparisons of a report, per CPC and model.

    Parameters
    ----------
    accuracy : dict
        The report's accuracies: ``{"cpcN": {row: {model: eval result}}, "full": {model: eval result}}``.
    cpcs, models : sequences
        The CPCs, and the models compared (the first is the main one).
    soft : bool
        The distilled sets carry learned soft labels: compare them with the rows evaluated with an expert's
        soft labels (``random_soft``, ``herding_soft``) where present, so a gain from labels is not counted as
        a gain from distillation.

    Returns
    -------
    dict
        ``{"gap_closed": {"cpcN": {model: float or None}}, "comparisons": {"cpcN": {"distilled_vs_herding":
        {...}, "distilled_vs_random": {...}, "by_model": {model: {...}}}}}``; the top-level comparisons are
        those of the main model, each with ``"model"`` and ``"baseline"`` (the row compared with).
    """
    gaps: Dict[str, dict] = {}
    comparisons: Dict[str, dict] = {}
    full = accuracy.get("full", {})
    for cpc in cpcs:
        rows = accuracy.get(f"cpc{cpc}", {})
        key = f"cpc{cpc}"
        for model in models:
            distilled = rows.get("distilled", {}).get(model)
            if distilled is None:
                continue
            pick = {}
            for base in ("random", "herding"):
                name = f"{base}_soft" if soft and model in rows.get(f"{base}_soft", {}) else base
                pick[base] = (name, rows.get(name, {}).get(model))
            random_entry, full_entry = pick["random"][1], full.get(model)
            gaps.setdefault(key, {})[model] = gap_closed(distilled.get("mean"), (random_entry or {}).get("mean"),
                                                        (full_entry or {}).get("mean"))
            found = {}
            for base, (name, entry) in pick.items():
                result = compare(distilled, entry, resamples, seed)
                if result is not None:
                    found[f"distilled_vs_{base}"] = dict(result, model=model, baseline=name)
            if not found:
                continue
            node = comparisons.setdefault(key, {})
            if model == models[0]:
                node.update(found)
            if len(models) > 1:
                node.setdefault("by_model", {})[model] = found
    return {"gap_closed": gaps, "comparisons": comparisons}


def interval_text(comparison: Optional[dict]) -> str:
    """``+3.10 [+1.20, +5.00]`` (points), or "-" for none."""
    if not comparison:
        return "-"
    lo, hi = comparison["ci95_pts"]
    return f"{comparison['diff_pts']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def strip_correctness(accuracy: dict) -> dict:
    """A copy of ``accuracy`` without the per-clip strings (report.json keeps the summaries; eval.json the
    strings)."""
    if isinstance(accuracy, dict):
        return {k: strip_correctness(v) for k, v in accuracy.items() if k != "test_correct"}
    return accuracy


__all__: List[str] = ["gap_closed", "correctness", "bootstrap_differences", "paired_bootstrap",
                      "compare", "yardstick", "interval_text", "strip_correctness"]
