"""Callbacks: what the training loops report as they go (TensorBoard here; W&B, MLflow or a notebook alike).

Expert training (:func:`~ddfad_fast.train.experts.train_experts`), distillation
(:func:`~ddfad_fast.train.distill.distill`) and evaluation
(:func:`~ddfad_fast.train.evaluate.evaluate_training_set`) take ``callbacks=`` (None, one :class:`Callback` or a
list) and call its hooks; a new logger subclasses :class:`Callback` and overrides the hooks it needs::

    class PrintLoss(Callback):
        def on_distill_iteration(self, iteration, metrics):
            print(iteration, metrics["loss"], metrics["alpha"])

    distill(x, y, trajectories, config, callbacks=[PrintLoss()])

Every stage starts with :meth:`Callback.on_stage_begin` (``stage`` "experts", "distill" or "evaluate"; ``info``
with a ``"scope"`` naming this instance of the stage in a run, e.g. "cpc10" or "cpc10/distilled/convnet") and
ends with :meth:`Callback.on_stage_end`. The hooks receive Python numbers and tensor copies: they draw no random
numbers and change no state of the loops, so a run gives the same tensors, bit for bit, with or without them.
An exception raised in a hook stops the stage (after the loop has written its checkpoint of that step).
Under torchrun, distillation and evaluation call the hooks on rank 0 only; expert training on the rank that
trains the expert.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import torch
from torch import Tensor

from ..errors import ParameterError

INSTALL_HINT = 'pip install "ddfad_fast[tb]" (or pip install "tensorboard>=2.14,<3")'


class Callback:
    """A no-op base: override the hooks you need. Metrics are plain floats (or ints)."""

    def on_stage_begin(self, stage: str, info: Dict[str, Any]) -> None:
        """A stage starts. ``stage``: "experts", "distill" or "evaluate". ``info``: ``scope`` (str, "" for
        none) and, per stage: experts ``num_experts``, ``epochs``; distill ``cpc``, ``iterations``,
        ``start_iteration`` (> 0 when resumed), ``feature_config`` (FeatureConfig), ``norm`` (FeatureNorm or
        None: the standardisation of the distilled features); evaluate ``model``, ``num_nets``, ``epochs``,
        ``lr``."""

    def on_expert_epoch(self, expert: int, epoch: int, metrics: Dict[str, float]) -> None:
        """Expert ``expert`` finished epoch ``epoch`` (1-based): ``train_loss`` (the epoch's mean) and
        ``val_accuracy`` (or ``test_accuracy`` when there is no validation split), in [0, 1]."""

    def on_distill_iteration(self, iteration: int, metrics: Dict[str, float]) -> None:
        """Distillation finished iteration ``iteration`` (1-based): ``loss`` (trajectory matching, the mean
        over the iteration's trajectories), ``alpha`` (the learned student step size after the update),
        ``seconds`` (wall seconds of the iteration's unrolls) and, at iterations where the set was evaluated,
        ``val_accuracy`` in [0, 1]."""

    def on_distilled_set(self, iteration: int, features: Tensor, labels: Tensor) -> None:
        """The synthetic set after iteration ``iteration``: ``features`` (N, 3, n_mfcc, T) float (standardised
        when the stage's ``norm`` is set) and ``labels`` (N,) int64 classes; copies, on the loop's device.
        Called after every iteration: log only every K-th."""

    def on_evaluation_epoch(self, net: int, epoch: int, metrics: Dict[str, float]) -> None:
        """Evaluation net ``net`` (0-based, seed ``config.seed + net``) finished epoch ``epoch`` (1-based):
        ``train_loss``."""

    def on_evaluation(self, metrics: Dict[str, float]) -> None:
        """An evaluation finished: ``test_accuracy`` and ``test_accuracy_std``, the mean and standard deviation
        of the nets' test accuracies (and ``val_accuracy``, ``val_accuracy_std`` with a validation split), in
        [0, 1]; ``epochs`` (trained per net); ``lr``."""

    def on_stage_end(self, stage: str, info: Dict[str, Any]) -> None:
        """The stage that began last ended normally (``info``: its scope, and e.g. the final ``alpha``)."""

    def close(self) -> None:
        """Release what the callback holds (files, connections); called once, when the job ends."""


class CallbackList(Callback):
    """Several callbacks called in order, optionally under a scope prefix.

    Parameters
    ----------
    callbacks : iterable of Callback
    prefix : str
        Put in front of every stage's ``info["scope"]`` (joined with "/"), e.g. "ablation/ch1".
    """

    def __init__(self, callbacks: Iterable[Callback] = (), prefix: str = "") -> None:
        self.callbacks: List[Callback] = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ParameterError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        self.prefix = prefix

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def scoped(self, prefix: str) -> "CallbackList":
        """The same callbacks with ``prefix`` added to the scopes (after this list's own prefix)."""
        return CallbackList(self.callbacks, "/".join(p for p in (self.prefix, prefix) if p))

    def on_stage_begin(self, stage, info):
        if self.prefix:
            info = dict(info, scope="/".join(p for p in (self.prefix, info.get("scope", "")) if p))
        for cb in self.callbacks:
            cb.on_stage_begin(stage, info)

    def on_expert_epoch(self, expert, epoch, metrics):
        for cb in self.callbacks:
            cb.on_expert_epoch(expert, epoch, metrics)

    def on_distill_iteration(self, iteration, metrics):
        for cb in self.callbacks:
            cb.on_distill_iteration(iteration, metrics)

    def on_distilled_set(self, iteration, features, labels):
        for cb in self.callbacks:
            cb.on_distilled_set(iteration, features, labels)

    def on_evaluation_epoch(self, net, epoch, metrics):
        for cb in self.callbacks:
            cb.on_evaluation_epoch(net, epoch, metrics)

    def on_evaluation(self, metrics):
        for cb in self.callbacks:
            cb.on_evaluation(metrics)

    def on_stage_end(self, stage, info):
        if self.prefix:
            info = dict(info, scope="/".join(p for p in (self.prefix, info.get("scope", "")) if p))
        for cb in self.callbacks:
            cb.on_stage_end(stage, info)

    def close(self):
        for cb in self.callbacks:
            cb.close()


def as_callbacks(callbacks: Union[None, Callback, Iterable[Callback]]) -> CallbackList:
    """``callbacks`` (None, one Callback, or an iterable of them) as a :class:`CallbackList` (empty for None).

    Raises
    ------
    ParameterError
        For anything that is not a Callback.
    """
    if callbacks is None:
        return CallbackList()
    if isinstance(callbacks, CallbackList):
        return callbacks
    if isinstance(callbacks, Callback):
        return CallbackList([callbacks])
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise ParameterError(f"callbacks must be a Callback or a list of them, got {type(callbacks).__name__}")
    return CallbackList(callbacks)


def feature_grid(features: Tensor, labels: Tensor, max_per_class: int = 10) -> Tensor:
    """A picture of a feature set: one row per class, one column per clip, each clip its three channels
    (MFCC, delta, delta-delta) stacked from top to bottom, low coefficients at the bottom.

    Parameters
    ----------
    features : Tensor, shape (N, 3, F, T)
    labels : Tensor, shape (N,), int
    max_per_class : int
        At most this many clips of each class (the first ones).

    Returns
    -------
    Tensor, shape (1, rows * (3F + 3) - 1, cols * (T + 1) - 1), float32 in [0, 1]
        Each channel scaled by its minimum and maximum over the whole set; separators are 1 (white).

    Raises
    ------
    ParameterError
        For shapes that do not match or ``max_per_class < 1``.
    """
    if features.dim() != 4 or labels.shape != (features.shape[0],) or features.shape[0] == 0:
        raise ParameterError(f"features must be (N >= 1, C, F, T) and labels (N,), got {tuple(features.shape)} "
                             f"and {tuple(labels.shape)}")
    if max_per_class < 1:
        raise ParameterError(f"max_per_class must be >= 1, got {max_per_class}")
    x = features.detach().float().cpu()
    lo = x.amin(dim=(0, 2, 3), keepdim=True)
    hi = x.amax(dim=(0, 2, 3), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp_min(1e-12)).flip(2)        # low coefficients at the bottom
    labels = labels.detach().cpu().long()
    classes = torch.unique(labels).tolist()
    n_ch, f, t = x.shape[1:]
    cell_h = n_ch * (f + 1) - 1
    members = [torch.nonzero(labels == c).flatten()[:max_per_class] for c in classes]
    cols = max(len(m) for m in members)
    grid = torch.ones(len(classes) * (cell_h + 1) - 1, cols * (t + 1) - 1)
    for row, idx in enumerate(members):
        for col, i in enumerate(idx.tolist()):
            top, left = row * (cell_h + 1), col * (t + 1)
            for ch in range(n_ch):
                grid[top + ch * (f + 1):top + ch * (f + 1) + f, left:left + t] = x[i, ch]
    return grid[None]


def summary_writer_class():
    """torch's ``SummaryWriter``; ParameterError naming the install command when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ParameterError(f"TensorBoard logging needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter


class TensorBoardCallback(Callback):
    """Scalars, the distilled feature grid and reconstructed clips into a TensorBoard event file
    (``torch.utils.tensorboard``); view with ``tensorboard --logdir LOG_DIR``.

    Tags are ``STAGE/SCOPE/NAME``: ``experts/expert_000/train_loss``, ``experts/expert_000/val_accuracy``
    (step: epoch); ``distill/cpc10/loss``, ``.../alpha``, ``.../seconds``, ``.../val_accuracy`` (step:
    iteration), the image ``distill/cpc10/features`` (:func:`feature_grid`) and the audio
    ``distill/cpc10/audio/class_K`` every ``every`` iterations and at the last one; ``evaluate/SCOPE/net0/
    train_loss`` (step: epoch) and ``evaluate/SCOPE/test_accuracy``, ``.../val_accuracy`` and their ``_std``
    (step: the epochs trained).

    Parameters
    ----------
    log_dir : str or Path
        The folder of the event files (made when missing).
    every : int
        The feature grid and the clips are written every ``every`` distillation iterations (K >= 1). They are
        made in the loop's thread (PNG encoding of the grid, a short Griffin-Lim): a fraction of a second each
        time on a CPU, small beside CPU iterations of seconds; raise ``every`` when iterations are much faster.
    audio_classes : int
        Clips written each time: the first clip of each of the first ``audio_classes`` classes (0: none).
    audio_iterations : int
        Griffin-Lim iterations of those clips (:func:`ddfad_fast.ops.reconstruct.fd_mfcc_to_audio`; few keep
        it cheap). Reconstruction runs on the CPU with its own seeded generator.
    max_per_class : int
        Clips of each class in the feature grid.

    Raises
    ------
    ParameterError
        When tensorboard is not installed (the message says how to install it), or for bad settings.
    """

    def __init__(self, log_dir: Union[str, Path], every: int = 10, audio_classes: int = 4, audio_iterations: int = 8,
                 max_per_class: int = 10) -> None:
        if every < 1 or audio_classes < 0 or audio_iterations < 1 or max_per_class < 1:
            raise ParameterError(f"need every >= 1, audio_classes >= 0, audio_iterations >= 1, max_per_class >= 1; "
                                 f"got {every}, {audio_classes}, {audio_iterations}, {max_per_class}")
        self.writer = summary_writer_class()(log_dir=str(log_dir))
        self.log_dir = Path(log_dir)
        self.every, self.audio_classes, self.audio_iterations = every, audio_classes, audio_iterations
        self.max_per_class = max_per_class
        self.stage, self.info = "", {}

    def _tag(self, *parts: str) -> str:
        return "/".join(p for p in (self.stage, self.info.get("scope", ""), *parts) if p)

    def _scalars(self, metrics: Dict[str, float], step: int, *parts: str) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(self._tag(*parts, key), float(value), step)

    def on_stage_begin(self, stage, info):
        self.stage, self.info = stage, dict(info)

    def on_expert_epoch(self, expert, epoch, metrics):
        self._scalars(metrics, epoch, f"expert_{expert:03d}")

    def on_distill_iteration(self, iteration, metrics):
        self._scalars(metrics, iteration)

    def on_distilled_set(self, iteration, features, labels):
        if iteration % self.every and iteration != self.info.get("iterations"):
            return
        self.writer.add_image(self._tag("features"), feature_grid(features, labels, self.max_per_class), iteration)
        config = self.info.get("feature_config")
        if config is None or self.audio_classes == 0:
            return
        from ..ops.reconstruct import fd_mfcc_to_audio
        x, labels = features.detach().float().cpu(), labels.detach().cpu().long()
        norm = self.info.get("norm")
        classes = torch.unique(labels).tolist()[:self.audio_classes]
        first = [int(torch.nonzero(labels == c).flatten()[0]) for c in classes]
        raw = norm.invert(x[first]) if norm is not None else x[first]
        waves = fd_mfcc_to_audio(raw, config.sample_rate, config, n_iter=self.audio_iterations,
                                 generator=torch.Generator().manual_seed(0))
        for c, wave in zip(classes, waves):
            peak = float(wave.abs().max())
            wave = wave * (0.99 / peak) if peak > 0.99 else wave
            self.writer.add_audio(self._tag("audio", f"class_{c}"), wave[None], iteration,
                                  sample_rate=config.sample_rate)

    def on_evaluation_epoch(self, net, epoch, metrics):
        self._scalars(metrics, epoch, f"net{net}")

    def on_evaluation(self, metrics):
        self._scalars({k: v for k, v in metrics.items() if k not in ("epochs", "lr")}, int(metrics.get("epochs", 0)))

    def on_stage_end(self, stage, info):
        self.writer.flush()

    def close(self):
        self.writer.close()


def tensorboard_callbacks(log_dir: Optional[Union[str, Path]], every: int = 10) -> CallbackList:
    """A :class:`CallbackList` holding a :class:`TensorBoardCallback` writing to ``log_dir`` (empty for None)."""
    return CallbackList([TensorBoardCallback(log_dir, every=every)] if log_dir is not None else [])
