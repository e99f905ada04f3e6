"""``ddfad distill --data SRC --experts DIR --cpc N --out DIR``: distil a data set by trajectory matching.

Writes ``OUT/distilled.pt`` (kind "distilled": features, labels (and learned soft labels), the learned
alpha, history, and everything evaluation and reconstruction need: the feature config, the
standardisation, the experts' model, the class names), plus ``OUT/checkpoint.pt``, ``OUT/history.json``
and ``OUT/distill.json`` (the configuration used).

Features are computed with the FeatureConfig the experts were trained with and standardised with the
standardisation stored in their trajectory files (none when they were trained on raw features). The
preset's validation split is carved from the training clips as for the experts. Presets give the
DistillConfig; flags override it. Settings and ``--max-memory`` are checked before ``--overwrite`` deletes
anything.

Under ``torchrun --nproc-per-node W -m ddfad_fast.cli distill ...`` the W processes share each iteration's
``--trajectories-per-iteration`` K trajectories (default there: K = W) and average their gradients with
one all-reduce (docs/distributed.md); they compute disjoint shards of the feature store; rank 0 alone
deletes, writes and prints.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import distributed
from ..config import Augment
from ..errors import ParameterError
from ..outputs import MARKER, check_deletable, clear, mark
from .options import (DeprecatedAlias, add_selection_options, add_source_options, add_tensorboard_options,
                      check_tensorboard, tensorboard_callbacks)

HELP = "distil a data set into CPC synthetic clips per class by matching expert trajectories (MTT)"
DISTILLED_NAME = "distilled.pt"
CONFIG_NAME = "distill.json"
_OWN_FILES = (DISTILLED_NAME, CONFIG_NAME, "checkpoint.pt", "history.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..presets import PRESET_NAMES
    parser.add_argument("--data", required=True, help="FSDD-named folder, class sub-folders, or CSV manifest")
    parser.add_argument("--experts", required=True, type=Path, help="folder of expert_KKK.pt trajectories")
    parser.add_argument("--cpc", required=True, type=int, help="synthetic clips per class")
    parser.add_argument("--out", required=True, type=Path, help="output folder (distilled.pt, checkpoint.pt)")
    parser.add_argument("--preset", default="cpu-small", choices=PRESET_NAMES, help="DistillConfig defaults")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous distillation in OUT first")
    add_source_options(parser, cache_help="feature cache folder (default: EXPERTS/cache when it exists, else OUT/cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("overrides of the preset's DistillConfig")
    group.add_argument("--iterations", type=int, default=None)
    group.add_argument("--syn-steps", type=int, default=None, help="student steps per iteration (N)")
    group.add_argument("--match-epochs", dest="expert_epochs", type=int, default=None,
                       help="M: match theta*_{t+M}, the expert M epochs ahead of the start")
    group.add_argument("--expert-epochs", dest="expert_epochs", type=int, action=DeprecatedAlias, new="--match-epochs")
    group.add_argument("--max-start-epoch", type=int, default=None)
    group.add_argument("--lr-data", type=float, default=None)
    group.add_argument("--lr-alpha", type=float, default=None)
    group.add_argument("--alpha-init", type=float, default=None)
    group.add_argument("--batch-syn", type=int, default=None, help="synthetic minibatch per step (default: all)")
    group.add_argument("--unroll", choices=("naive", "reverse"), default=None)
    group.add_argument("--max-memory", type=float, default=None, metavar="GB",
                       help="choose unroll mode and batch to fit GB GiB, or refuse before starting")
    group.add_argument("--compile", dest="compile", action="store_true", default=None,
                       help="torch.compile the per-step functions (reverse mode)")
    group.add_argument("--no-compile", dest="compile", action="store_false")
    group.add_argument("--augment", dest="augment", action="store_true", default=None,
                       help="differentiable time shift and time/frequency masking (the preset's sizes, else the defaults)")
    group.add_argument("--no-augment", dest="augment", action="store_false")
    add_selection_options(group)
    group.add_argument("--labels", choices=("hard", "soft"), default=None, help="class labels or learned soft labels")
    group.add_argument("--lr-labels", type=float, default=None, help="step size of the soft-label logits")
    group.add_argument("--checkpoint-every", type=int, default=None)
    group.add_argument("--eval-every", type=int, default=None,
                       help="train one net on the synthetic set every N iterations (0: never)")
    group.add_argument("--seed", type=int, default=None)
    group.add_argument("--trajectories-per-iteration", type=int, default=None, metavar="K",
                       help="expert trajectories unrolled per update, their gradients averaged (default: 1; "
                            "under torchrun the number of processes, each unrolling K / processes of them; "
                            "K must be >= the number of processes)")
    add_tensorboard_options(parser)


_OVERRIDES = ("iterations", "syn_steps", "expert_epochs", "lr_data", "lr_alpha", "alpha_init", "batch_syn",
              "unroll", "compile", "checkpoint_every", "eval_every", "seed", "labels", "lr_labels",
              "start_window", "init", "distill_fraction", "ema_decay")


def distill_config(preset, args: argparse.Namespace, expert_epochs: int):
    """The preset's DistillConfig with the flags applied; max_start_epoch is clamped to the experts'
    epochs unless given explicitly."""
    config = preset.distill.replace(cpc=args.cpc)
    changes = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    if args.max_memory is not None:
        changes["max_memory_gb"] = args.max_memory
    if args.augment is not None:
        changes["augment"] = (config.augment or Augment()) if args.augment else None
    if args.max_start_epoch is not None:
        changes["max_start_epoch"] = args.max_start_epoch
    k = getattr(args, "trajectories_per_iteration", None)
    if k is not None:
        changes["trajectories_per_iteration"] = k
    elif distributed.world_size() > 1:          # torchrun: one trajectory per process and iteration
        changes["trajectories_per_iteration"] = distributed.world_size()
    config = config.replace(**changes)
    if args.max_start_epoch is None and config.max_start_epoch + config.expert_epochs > expert_epochs:
        config = config.replace(max_start_epoch=max(0, expert_epochs - config.expert_epochs))
    return config


def _check_out(out: Path, resume: bool, overwrite: bool, inputs=()) -> bool:
    """Whether ``out`` holds something to delete (with --overwrite: only a folder a distillation made, never one
    holding an input); refuses unsafe combinations."""
    if resume and overwrite:
        raise ParameterError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, not a folder")
    if not (out.exists() and any(p.name != MARKER for p in out.iterdir())):
        return False
    if overwrite:
        check_deletable(out, "distill", inputs() if callable(inputs) else inputs,
                        legacy=(DISTILLED_NAME, CONFIG_NAME, "checkpoint.pt"))
        return True
    if not resume:
        raise ParameterError(f"{out} exists; pass --resume to continue it or --overwrite to start again")
    return False


def _feature_cache(args: argparse.Namespace) -> Path:
    """--cache, else an existing cache of the experts (``ddfad experts`` / ``ddfad run`` layout), else OUT/cache."""
    if args.cache is not None:
        return args.cache
    for folder in (args.experts / "cache", args.experts.parent / "cache"):
        if folder.is_dir():
            return folder
    return args.out / "cache"


def main(args: argparse.Namespace) -> int:
    from ..data import load_feature_split
    from ..data.sources import input_paths
    from ..train.distill import distill, preflight
    from ..train.evaluate import evaluate_training_set
    from ..train.experts import load_trajectories
    from ..io import atomic_write_json
    from ..presets import get_preset

    out: Path = args.out
    main_rank = distributed.is_main()
    check_tensorboard(args)
    # every step that can fail runs in distributed.together(): a failure on one process stops all of them
    delete = distributed.together(lambda: _check_out(out, args.resume, args.overwrite,
                                                     lambda: input_paths(args.data) + [args.experts]), run=main_rank)
    trajectories = distributed.together(lambda: load_trajectories(args.experts))
    features = trajectories.feature_config
    preset = get_preset(args.preset)
    config = distill_config(preset, args, trajectories.expert_config.epochs)

    # under torchrun the ranks compute disjoint shards of the feature store (a failure stops every rank)
    split = load_feature_split(args.data, features, cache_dir=_feature_cache(args), max_per_class=args.max_per_class,
                               strict=args.strict, progress=not args.quiet, val_fraction=preset.val_fraction)
    if tuple(split.in_shape) != tuple(trajectories.in_shape) or split.num_classes != trajectories.num_classes:
        raise ParameterError(f"--data gives {split.num_classes} classes of shape {split.in_shape} but the experts in "
                             f"{args.experts} were trained on {trajectories.num_classes} of {trajectories.in_shape}")
    if trajectories.norm is not None:
        split = split.standardized(trajectories.norm)
    split = split.to(args.device)
    x_train = split.x_train
    # bad settings / --max-memory: before any deletion (a resumed run keeps the memory plan of its checkpoint)
    distributed.together(lambda: preflight(x_train, split.y_train, trajectories, config,
                               resume_from=out / "checkpoint.pt" if args.resume and main_rank else None))
    if main_rank:
        if delete:
            clear(out)
        out.mkdir(parents=True, exist_ok=True)
        if not any(p.name not in (MARKER, "cache") for p in out.iterdir()):
            mark(out, "distill")                  # a folder this command made: a later --overwrite may empty it
        atomic_write_json(out / CONFIG_NAME, {"data": str(args.data), "experts": str(args.experts),
                                              "standardized": trajectories.norm is not None,
                                              "preset": args.preset, "distill": config.to_dict(),
                                              "expert": trajectories.expert_config.to_dict(),
                                              "features": features.to_dict()})

    _, x_monitor, y_monitor = split.monitor_set()

    def monitor(xs, ys, lr):
        """One net on the validation split (the test split is kept for reported numbers)."""
        return evaluate_training_set(xs, ys, x_monitor, y_monitor, trajectories.expert_config.model,
                                     preset.eval.replace(num_nets=1), lr=lr)

    callbacks = tensorboard_callbacks(args)
    try:
        result = distill(x_train, split.y_train, trajectories, config, out_dir=out, resume=args.resume,
                         evaluate_fn=monitor if config.eval_every and len(y_monitor) else None,
                         progress=not args.quiet, callbacks=callbacks)
    finally:
        callbacks.close()
    if not main_rank:
        return 0
    result.save(out / DISTILLED_NAME, features, trajectories.expert_config, split.class_names)
    session = result.history["sessions"][-1]
    loss = result.history["loss"]
    print(f"distilled {len(result.labels)} clips ({config.cpc} per class) in {out / DISTILLED_NAME}: "
          f"alpha {result.alpha:.4g}, loss {loss[-1] if loss else float('nan'):.4f} after {len(loss)} iterations "
          f"({session['unroll']} unroll, {'compiled' if session['compiled'] else 'eager'}"
          + (f", {config.trajectories_per_iteration} trajectories per iteration on {session['processes']} processes"
             if session["processes"] > 1 or config.trajectories_per_iteration > 1 else "") + ")")
    return 0
