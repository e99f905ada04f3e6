"""Sub-commands of the ``ddfad`` CLI (see ddfad_fast.cli)."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

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
