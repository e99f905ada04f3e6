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
2,430 training clips after the validation split) CPC 1 / 10 / 50 keep 0.4 / 4.1 / 20.6 % of the clips; on
EmoDB (7 classes, 387) CPC 1 / 5 / 10 keep 1.8 / 9.0 / 18.1 %.

``start_window="auto"`` (the presets' choice) uses the ratio window from :data:`AUTO_MIN_RATIO` (5 %) of the
training set up and the fixed window below it. Measured on the validation splits with the cpu-small experts
(15 epochs, M = 2, max_start_epoch 10), 100 iterations, seed 0 (tags ``window-*``, ``datm-*`` in
bench/results/recipes_cpu.jsonl; the same experts for both windows of a row):

=====================  ==========  ==============  ===============  ================
corpus, CPC            ratio       ratio window    ratio window %   fixed 0-10 %
=====================  ==========  ==============  ===============  ================
FSDD, 1                0.4 %       0-1             66.8 +- 3.9      75.3 +- 3.8
EmoDB, 1               1.8 %       0-4             31.1 +- 4.8      35.2 +- 3.7
FSDD, 10               4.1 %       0-6             93.3 +- 0.4      95.5 +- 0.5
EmoDB, 5               9.0 %       3-8             42.7 +- 3.0      37.3 +- 1.1
EmoDB, 10              18.1 %      6-9             49.5 +- 3.6      43.4 +- 4.0
FSDD, 50               20.6 %      6-9             98.0 +- 0.3      97.9 +- 0.8
=====================  ==========  ==============  ===============  ================

The ratio window loses up to 4.1 % and wins or ties from 9 % (10 evaluation nets per cell at CPC 1, 5 at
the others, 10 for EmoDB's fixed window at CPC 10). The switch lies between 4.1 and 9 %; 5 % is the round
figure inside.
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


def window_used(mode: str, cpc: int, num_classes: int, num_train: int) -> str:
    """:func:`resolve_start_window` at the data ratio of ``cpc`` clips per class of ``num_classes`` classes out
    of ``num_train`` training clips."""
    return resolve_start_window(mode, data_ratio(cpc, num_classes, num_train))


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
    if window_used(mode, cpc, num_classes, num_train) == "fixed":
        return 0, int(max_start_epoch)
    last_possible = expert_epochs - match_epochs
    if last_possible < 0:
        raise ParameterError(f"the expert trajectories have {expert_epochs} epochs, fewer than the "
                             f"{match_epochs} epochs a match spans")
    lo, hi = ratio_window(data_ratio(cpc, num_classes, num_train))
    first = math.floor(lo * expert_epochs + 0.5)
    last = max(first, math.floor(hi * expert_epochs + 0.5))
    last = min(last, last_possible)
    return min(first, last), last
