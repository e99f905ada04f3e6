"""Options shared by the sub-commands of the ``ddfad`` CLI, declared once (see ddfad_fast.cli)."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Optional

from ..config import INITS
from ..train.window import AUTO_MIN_RATIO, START_WINDOWS

_WARNED: set = set()


class DeprecatedAlias(argparse.Action):
    """The old spelling of a renamed flag, kept for one release: it stores its value like the new
    spelling (same ``dest``) and warns once per process (a FutureWarning naming the new spelling).

    ``parser.add_argument("--old", dest=NEW_DEST, action=DeprecatedAlias, new="--new", type=...)``.
    """

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        kwargs.setdefault("help", f"deprecated spelling of {new}")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        key = (parser.prog, option_string)
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"{parser.prog}: {option_string} is deprecated and will be removed in the next release; "
                          f"use {self.new}", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)




def add_selection_options(group) -> None:
    """``--start-window``, ``--init``, ``--distill-fraction`` and ``--ema-decay``: which expert epochs are matched,
    where the synthetic set starts, which share of it is distilled, and whether the run returns a moving
    average of it."""
    group.add_argument("--start-window", choices=START_WINDOWS, default=None,
                       help="expert start epochs: fixed = [0, max-start-epoch]; ratio = the window set by the "
                            "fraction of the training set each CPC keeps (early epochs for tiny sets); auto = ratio "
                            f"from {AUTO_MIN_RATIO * 100:g} %% of the training set, fixed below (the presets' choice)")
    group.add_argument("--init", choices=INITS, default=None,
                       help="initial synthetic clips: random real ones, random ones the experts classify correctly, "
                            "or the herding coreset")
    group.add_argument("--distill-fraction", type=float, default=None, metavar="F",
                       help="share of each class's clips that distillation updates; the rest stay real (default 1)")
    group.add_argument("--ema-decay", type=float, default=None, metavar="D",
                       help="return an exponential moving average of the synthetic set, decay D per iteration "
                            "(default 0: the last iterate)")


def add_tensorboard_options(parser: argparse.ArgumentParser) -> None:
    """``--tensorboard DIR`` and ``--tensorboard-every K`` (see :class:`ddfad_fast.train.callbacks.TensorBoardCallback`)."""
    parser.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                        help="log losses, the learned step size, timings, accuracies, expert and evaluation curves, "
                             "the distilled features and a few reconstructed clips to TensorBoard event files in DIR "
                             "(view: tensorboard --logdir DIR; needs pip install \"ddfad_fast[tb]\")")
    parser.add_argument("--tensorboard-every", type=int, default=10, metavar="K",
                        help="write the distilled feature grid and clips every K distillation iterations (default 10)")


def check_tensorboard(args: argparse.Namespace) -> None:
    """With ``--tensorboard``: ParameterError (one line, how to install it) when tensorboard is missing."""
    if getattr(args, "tensorboard", None) is not None:
        from ..train.callbacks import summary_writer_class
        summary_writer_class()


def tensorboard_callbacks(args: argparse.Namespace):
    """The callbacks of ``--tensorboard`` (an empty list without it, and on every rank but 0 under torchrun)."""
    from .. import distributed
    from ..train.callbacks import CallbackList, tensorboard_callbacks as make
    if getattr(args, "tensorboard", None) is None or not distributed.is_main():
        return CallbackList()
    return make(args.tensorboard, every=args.tensorboard_every)


MEMORY_HELP = ("memory limit: features are computed to fit and read from their store when they do not fit beside "
               "training, or the command refuses before it starts")


def add_source_options(parser, cache_help: Optional[str] = None, prefix: str = "") -> None:
    """``--max-per-class N``, ``--strict`` and, with ``cache_help``, ``--cache DIR``: how a command reads a
    labelled source. ``prefix`` starts each help text (e.g. ``"info: "`` where only one action reads data)."""
    if cache_help is not None:
        parser.add_argument("--cache", type=Path, default=None, help=prefix + cache_help)
    parser.add_argument("--max-per-class", type=int, default=None, metavar="N",
                        help=prefix + "at most N files per class and split")
    parser.add_argument("--strict", action="store_true",
                        help=prefix + "an unusable audio file (unreadable, truncated, non-finite) is an error, "
                                      "not a skip")


def add_training_options(parser, what: str = "the training steps", ensemble_help: str = "the nets",
                         memory_help: str = MEMORY_HELP) -> None:
    """``--no-compile``, ``--ensemble`` and ``--max-memory GB`` of the commands that train nets."""
    parser.add_argument("--no-compile", action="store_true", help=f"run {what} eagerly (no torch.compile)")
    parser.add_argument("--ensemble", action="store_true",
                        help=f"train {ensemble_help} together (torch.func.vmap; for GPUs, slower on CPUs)")
    parser.add_argument("--max-memory", type=float, default=None, metavar="GB", help=memory_help)
