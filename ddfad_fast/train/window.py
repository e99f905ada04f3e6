"""The window of expert epochs a trajectory-matching iteration may start from.

``start_window="fixed"`` (MTT): the start epoch t is drawn from [0, ``max_start_epoch``].

``start_window="ratio"`` (difficulty-aligned, after DATM, Guo et al., ICLR 2024): the window follows the
fraction of the training set the synthetic set keeps, ``ratio = cpc x classes / training clips``. A tiny set
can only hold the easy patterns an expert learns first, so it matches early epochs; a large one matches the
later, harder part of training. :func:`ratio_window` gives the window as fractions of the experts' training,
piecewise linear in log10(ratio) between these anchors and constant beyond them:

==========  ==========================  ==================
ratio       window start (fraction)     window end
==========  ==========================  ==================
<= 0.4 %    0                           0.04
4 %         0                           0.40
>= 20 %     0.40                        0.60
==========  ==========================  ==================

Both ends are non-decreasing in the ratio and the start is always below the end. On FSDD (10 classes,
2,430 training clips after the validation split) CPC 1 / 10 / 50 keep 0.4 / 4.1 / 20.6 % of the clips.
Measured there at CPC 1 on the validation split with the cpu-small experts (15 epochs: window 0-1), it lost to
the fixed window 0-10 (66.8 vs 75.3 %); on EmoDB at CPC 10 (18 %: window 6-9 of 15 epochs) it won (49.5 vs
43.4 %) and on FSDD at CPC 50 the two were level (98.0 vs 97.9 %; see ddfad_fast/presets.py). "fixed" stays the default.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

from ..errors import ParameterError

START_WINDOWS = ("fixed", "ratio", "auto")
# "auto": the ratio window from this data ratio up, the fixed window below it (module docstring)
AUTO_MIN_RATIO = 0.05
# (ratio, fraction of expert training): the window's end, and its start
END_ANCHORS: Tuple[Tuple[float, float], ...] = ((0.004, 0.04), (0.04, 0.40), (0.20, 0.60))
START_ANCHORS: Tuple[Tuple[float, float], ...] = ((0.04, 0.0), (0.20, 0.40))


def _interpolate(anchors: Sequence[Tuple[float, float]], ratio: float) -> float:
    """Piecewise linear in log10(ratio) through ``anchors`` (sorted by ratio), constant outside them."""
    if ratio <= anchors[0][0]:
        return anchors[0][1]
    for (r0, f0), (r1, f1) in zip(anchors, anchors[1:]):
        if ratio <= r1:
            w = (math.log10(ratio) - math.log10(r0)) / (math.log10(r1) - math.log10(r0))
            return f0 + w * (f1 - f0)
    return anchors[-1][1]


def data_ratio(cpc: int, num_classes: int, num_train: int) -> float:
    """The fraction of the training set a synthetic set of ``cpc`` clips per class keeps (in (0, 1])."""
    if cpc < 1 or num_classes < 1 or num_train < 1:
        raise ParameterError(f"need cpc, classes and training clips >= 1, got {cpc}, {num_classes}, {num_train}")
    return min(1.0, cpc * num_classes / num_train)


def ratio_window(ratio: float) -> Tuple[float, float]:
    """The start-epoch window for a data ratio, as fractions (start, end) of the experts' training.

    Parameters
    ----------
    ratio : float
        Synthetic clips / training clips, in (0, 1].

    Returns
    -------
    (float, float)
        0 <= start < end <= 0.6; both non-decreasing in ``ratio`` (table in the module docstring).

    Raises
    ------
    ParameterError
        ``ratio`` outside (0, 1] or not finite.
    """
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 < ratio <= 1):
        raise ParameterError(f"the data ratio must be in (0, 1], got {ratio!r}")
    return _interpolate(START_ANCHORS, ratio), _interpolate(END_ANCHORS, ratio)


def resolve_start_window(mode: str, ratio: float) -> str:
    """The window a ``start_window`` setting uses at a data ratio: "fixed" or "ratio" ("auto": "ratio" from
    :data:`AUTO_MIN_RATIO` up)."""
    if mode not in START_WINDOWS:
        raise ParameterError(f"start_window must be one of {START_WINDOWS}, got {mode!r}")
    if mode == "auto":
        return "ratio" if ratio >= AUTO_MIN_RATIO else "fixed"
    return mode


def start_epoch_window(mode: str, max_start_epoch: int, match_epochs: int, expert_epochs: int, cpc: int,
                       num_classes: int, num_train: int) -> Tuple[int, int]:
    """The epochs (first, last) a start epoch is drawn from, both included.

    Parameters
    ----------
    mode : str
        "fixed": (0, ``max_start_epoch``); "auto": one of the two (:func:`resolve_start_window`);
        "ratio": :func:`ratio_window` of the data ratio times
        ``expert_epochs``, rounded to the nearest epoch (the end at least the start), the end capped at
        ``expert_epochs - match_epochs`` so that the target epoch t + M exists.
    max_start_epoch, match_epochs, expert_epochs : int
        The fixed window's end, M (epochs between start and target) and the epochs of the trajectories.
    cpc, num_classes, num_train : int
        Synthetic clips per class, classes, training clips (for the data ratio).

    Returns
    -------
    (int, int)
        first <= last, last + match_epochs <= expert_epochs (in "ratio" mode).

    Raises
    ------
    ParameterError
        An unknown ``mode``, or trajectories shorter than ``match_epochs``.
    """
    ratio = data_ratio(cpc, num_classes, num_train)
    if resolve_start_window(mode, ratio) == "fixed":
        return 0, int(max_start_epoch)
    last_possible = expert_epochs - match_epochs
    if last_possible < 0:
        raise ParameterError(f"the expert trajectories have {expert_epochs} epochs, fewer than the "
                             f"{match_epochs} epochs a match spans")
    lo, hi = ratio_window(ratio)
    first = math.floor(lo * expert_epochs + 0.5)
    last = max(first, math.floor(hi * expert_epochs + 0.5))
    last = min(last, last_possible)
    return min(first, last), last
