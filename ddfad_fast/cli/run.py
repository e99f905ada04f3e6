"""``ddfad run --data DIR --cpc 10 --out runs/NAME``: the whole pipeline, each stage resumable.

The stages, the failure rules and the layout of ``--out`` are those of :mod:`ddfad_fast.apps.run`; this
module parses the flags into a preset and calls :func:`ddfad_fast.apps.api.distill_dataset`.

``--resume --iterations N`` continues a finished run to N distillation iterations: the distillations go on
from their checkpoints and only what depends on them (their evaluations and audio) is redone.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


from ..errors import ParameterError
from ..presets import PRESET_NAMES, Preset, get_preset
from .features import add_data_options, features_in_memory
from .options import add_selection_options, add_source_options, add_tensorboard_options, add_training_options
from ..apps.api import distill_dataset

HELP = "the whole pipeline: features -> experts -> distill per CPC -> evaluate -> audio -> report"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="FSDD-named folder, class sub-folders, CSV manifest, a Hugging "
                        "Face dataset saved with save_to_disk, or hf:NAME[:CONFIG] from the local cache")
    parser.add_argument("--cpc", type=int, action="append", required=True, help="clips per class (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME")
    parser.add_argument("--preset", default="cpu-small", choices=PRESET_NAMES)
    parser.add_argument("--resume", action="store_true", help="continue a run in --out")
    parser.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    add_source_options(parser)
    parser.add_argument("--seed", type=int, default=None, help="every seed of the run (default: the preset's, 0)")
    group = parser.add_argument_group("overrides of the preset")
    group.add_argument("--width", type=int, default=None, help="ConvNet width (experts, student, evaluation)")
    group.add_argument("--depth", type=int, default=None)
    group.add_argument("--num-experts", type=int, default=None)
    group.add_argument("--expert-epochs", type=int, default=None, help="epochs per expert")
    group.add_argument("--expert-batch-size", type=int, default=None, help="expert SGD batch size")
    group.add_argument("--expert-epoch-steps", type=int, default=None,
                       help="SGD steps an expert epoch (snapshot) takes at least: several passes over a small training "
                            "set (0: one pass; default: the preset's)")
    group.add_argument("--iterations", type=int, default=None,
                       help="distillation iterations (with --resume: continue a finished run to this many)")
    group.add_argument("--syn-steps", type=int, default=None)
    group.add_argument("--max-start-epoch", type=int, default=None)
    group.add_argument("--lr-data", type=float, default=None)
    add_selection_options(group)
    group.add_argument("--labels", choices=("hard", "soft"), default=None, help="class labels or learned soft labels")
    group.add_argument("--batch-syn", type=int, default=None, help="synthetic clips per student step")
    group.add_argument("--checkpoint-every", type=int, default=None, help="distillation iterations per checkpoint")
    add_training_options(group, what="every training and student step",
                         ensemble_help="the experts, and the evaluation nets of a set,",
                         memory_help="memory limit of every stage: features (shards, batches, workers), experts and "
                                     "evaluation (features in memory or read from their store) and distillation (batch "
                                     "and unroll mode) are planned to fit, or the run refuses before the stage starts")
    add_data_options(group, inferred=True)
    group.add_argument("--num-nets", type=int, default=None, help="evaluation nets per set")
    group.add_argument("--eval-epochs", type=int, default=None,
                       help="epochs of distilled / baseline evaluation (instead of the preset's SGD steps)")
    group.add_argument("--eval-steps", type=int, default=None, help="SGD steps of distilled / baseline evaluation")
    group.add_argument("--full-epochs", type=int, default=None,
                       help="epochs of the full-data evaluation (instead of the preset's SGD steps)")
    group.add_argument("--full-steps", type=int, default=None, help="SGD steps of the full-data evaluation")
    group.add_argument("--models", default=None, help="evaluation architectures, comma-separated")
    group.add_argument("--cross-models", default=None,
                       help="architectures the distilled set is also evaluated on at --cross-cpc ('' for none)")
    group.add_argument("--ablation", default=None, metavar="K,...",
                       help="also distil and evaluate at --cross-cpc with only the first K channels "
                            "(1 = MFCC, 2 = MFCC + delta), e.g. 1,2 ('' for none)")
    group.add_argument("--cross-cpc", type=int, default=None, help="the CPC of the cross-architecture and ablation rows")
    group.add_argument("--no-audio", action="store_true", help="skip reconstruction to WAV")
    add_tensorboard_options(parser)


def apply_overrides(preset: Preset, args: argparse.Namespace) -> Preset:
    """The preset with the command-line overrides applied (the features are chosen by
    :func:`ddfad_fast.apps.api.distill_dataset` from ``--feature-preset``, ``--duration`` and the data)."""
    model = preset.expert.model
    if args.width is not None:
        model = model.replace(width=args.width)
    if args.depth is not None:
        model = model.replace(depth=args.depth)
    expert = preset.expert.replace(model=model)
    if args.num_experts is not None:
        expert = expert.replace(num_experts=args.num_experts)
    if args.expert_epochs is not None:
        expert = expert.replace(epochs=args.expert_epochs)
    if args.expert_batch_size is not None:
        expert = expert.replace(batch_size=args.expert_batch_size)
    if args.expert_epoch_steps is not None:
        expert = expert.replace(min_epoch_steps=args.expert_epoch_steps or None)
    distill = preset.distill
    for name in ("iterations", "syn_steps", "max_start_epoch", "lr_data", "batch_syn", "checkpoint_every", "labels",
                 "start_window", "init", "distill_fraction", "ema_decay"):
        if getattr(args, name, None) is not None:
            distill = distill.replace(**{name: getattr(args, name)})
    if args.no_compile:
        distill, expert = distill.replace(compile=False), expert.replace(compile=False)
    if args.max_memory is not None:
        distill = distill.replace(max_memory_gb=args.max_memory)
    if distill.max_start_epoch + distill.expert_epochs > expert.epochs:
        distill = distill.replace(max_start_epoch=max(0, expert.epochs - distill.expert_epochs))
    ev, ev_full = preset.eval, preset.eval_full
    if args.no_compile:
        ev, ev_full = ev.replace(compile=False), ev_full.replace(compile=False)
    if getattr(args, "ensemble", False):
        ev, ev_full = ev.replace(ensemble=True), ev_full.replace(ensemble=True)
        expert = expert.replace(ensemble=True)
    if args.num_nets is not None:
        ev, ev_full = ev.replace(num_nets=args.num_nets), ev_full.replace(num_nets=args.num_nets)
    if args.eval_epochs is not None:
        ev = ev.replace(epochs=args.eval_epochs, steps=None)
    if getattr(args, "eval_steps", None) is not None:
        ev = ev.replace(steps=args.eval_steps)
    if args.full_epochs is not None:
        ev_full = ev_full.replace(epochs=args.full_epochs, steps=None)
    if getattr(args, "full_steps", None) is not None:
        ev_full = ev_full.replace(steps=args.full_steps)
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        ev, ev_full = ev.replace(models=models), ev_full.replace(models=models)
    cross = preset.cross_models
    if getattr(args, "cross_models", None) is not None:
        cross = tuple(m.strip() for m in args.cross_models.split(",") if m.strip())
    changes = {}
    if getattr(args, "ablation", None) is not None:
        changes["ablation_channels"] = tuple(int(k) for k in args.ablation.split(",") if k.strip())
        if any(k not in (1, 2) for k in changes["ablation_channels"]):
            raise ParameterError(f"--ablation takes channel counts 1 and/or 2, got {args.ablation!r}")
    if getattr(args, "cross_cpc", None) is not None:
        changes["cross_cpc"] = args.cross_cpc
    return preset.replace(expert=expert, distill=distill, eval=ev, eval_full=ev_full, cross_models=cross, **changes)


def main(args: argparse.Namespace) -> int:
    preset = apply_overrides(get_preset(args.preset), args)
    run = distill_dataset(args.data, args.cpc, preset, args.out, features=args.feature_preset, duration=args.duration,
                          seed=args.seed, resume=args.resume, overwrite=args.overwrite, max_per_class=args.max_per_class,
                          audio=not args.no_audio, strict=args.strict, device=args.device,
                          in_memory=features_in_memory(args), workers=args.workers, log_dir=args.tensorboard,
                          log_every=args.tensorboard_every)
    results = run.report
    for cpc in results["cpcs"]:
        acc = results["accuracy"].get(f"cpc{cpc}", {})
        for model, d in acc.get("distilled", {}).items():
            rows = [f"distilled {100 * d['mean']:.2f} +- {100 * d['std']:.2f} %"]
            for name in ("random", "herding"):
                r = acc.get(name, {}).get(model)
                if r:
                    rows.append(f"{name} {100 * r['mean']:.2f} +- {100 * r['std']:.2f} %")
            print(f"CPC {cpc:3d} {model:8s} " + "   ".join(rows) + "   (test split)")
    for model, r in results["accuracy"].get("full", {}).items():
        print(f"full data {model:8s} {100 * r['mean']:.2f} +- {100 * r['std']:.2f} %   (test split)")
    print(f"report: {args.out / 'report.md'}")
    if results["failures"]:
        for failure in results["failures"]:
            print(f"FAILED stage {failure['stage']}: {failure['error']}")
        return 1
    return 0
