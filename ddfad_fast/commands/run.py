"""``ddfad run --data DIR --cpc 10 --out runs/NAME``: the whole pipeline, each stage resumable.

features (cached) -> experts -> distill per CPC -> evaluate (distilled / random real of the same CPC /
full data) -> reconstruct the distilled sets to WAVs -> report.json, report.md, plots.

Layout of ``--out``: run.json (the configuration), feature_stats.pt, cache/, experts/, cpcN/
(distillation checkpoint, log, distilled.pt in the features the nets see, distilled_raw.pt in raw FD-MFCC
units for ``ddfad reconstruct``, audio/*.wav + audio/manifest.csv), eval.json (the
accuracies computed so far), stages.json (wall seconds per stage), the report files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..errors import ParameterError
from ..io import atomic_write_json, atomic_write_text, load_artifact, save_artifact
from ..presets import PRESET_NAMES, Preset, get_preset

HELP = "the whole pipeline: features -> experts -> distill per CPC -> evaluate -> audio -> report"
RUN_FILE = "run.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="FSDD-named folder, class sub-folders, or CSV manifest")
    parser.add_argument("--cpc", type=int, action="append", required=True, help="clips per class (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME")
    parser.add_argument("--preset", default="cpu-small", choices=PRESET_NAMES)
    parser.add_argument("--resume", action="store_true", help="continue a run in --out")
    parser.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    parser.add_argument("--max-per-class", type=int, default=None, help="at most N files per class and split")
    parser.add_argument("--strict", action="store_true", help="an unusable audio file is an error, not a skip")
    group = parser.add_argument_group("overrides of the preset")
    group.add_argument("--width", type=int, default=None, help="ConvNet width (experts, student, evaluation)")
    group.add_argument("--depth", type=int, default=None)
    group.add_argument("--num-experts", type=int, default=None)
    group.add_argument("--expert-epochs", type=int, default=None, help="epochs per expert")
    group.add_argument("--expert-batch-size", type=int, default=None, help="expert SGD batch size")
    group.add_argument("--iterations", type=int, default=None, help="distillation iterations")
    group.add_argument("--syn-steps", type=int, default=None)
    group.add_argument("--max-start-epoch", type=int, default=None)
    group.add_argument("--lr-data", type=float, default=None)
    group.add_argument("--batch-syn", type=int, default=None, help="synthetic clips per student step")
    group.add_argument("--checkpoint-every", type=int, default=None, help="distillation iterations per checkpoint")
    group.add_argument("--no-compile", action="store_true", help="run the student steps eagerly")
    group.add_argument("--max-memory", type=float, default=None, metavar="GB",
                       help="distillation memory limit: batch and unroll mode are chosen to fit, or the run refuses")
    group.add_argument("--num-nets", type=int, default=None, help="evaluation nets per set")
    group.add_argument("--eval-epochs", type=int, default=None, help="epochs of distilled / random-real evaluation")
    group.add_argument("--full-epochs", type=int, default=None, help="epochs of the full-data evaluation")
    group.add_argument("--models", default=None, help="evaluation architectures, comma-separated")
    group.add_argument("--no-audio", action="store_true", help="skip reconstruction to WAV")


def apply_overrides(preset: Preset, args: argparse.Namespace) -> Preset:
    """The preset with the command-line overrides applied."""
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
    distill = preset.distill
    for name in ("iterations", "syn_steps", "max_start_epoch", "lr_data", "batch_syn", "checkpoint_every"):
        if getattr(args, name) is not None:
            distill = distill.replace(**{name: getattr(args, name)})
    if args.no_compile:
        distill = distill.replace(compile=False)
    if args.max_memory is not None:
        distill = distill.replace(max_memory_gb=args.max_memory)
    if distill.max_start_epoch + distill.expert_epochs > expert.epochs:
        distill = distill.replace(max_start_epoch=max(0, expert.epochs - distill.expert_epochs))
    ev, ev_full = preset.eval, preset.eval_full
    if args.num_nets is not None:
        ev, ev_full = ev.replace(num_nets=args.num_nets), ev_full.replace(num_nets=args.num_nets)
    if args.eval_epochs is not None:
        ev = ev.replace(epochs=args.eval_epochs)
    if args.full_epochs is not None:
        ev_full = ev_full.replace(epochs=args.full_epochs)
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        ev, ev_full = ev.replace(models=models), ev_full.replace(models=models)
    return Preset(preset.name, preset.description, preset.features, expert, distill, ev, ev_full, preset.standardize)


def _prepare_out(out: Path, run_config: dict, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise ParameterError("--resume and --overwrite exclude each other")
    exists = out.exists() and any(out.iterdir())
    if exists and overwrite:
        if not (out / RUN_FILE).is_file():
            raise ParameterError(f"{out} is not a ddfad run folder (no {RUN_FILE}); refusing to delete it")
        shutil.rmtree(out)
        exists = False
    if exists and not resume:
        raise ParameterError(f"{out} exists; pass --resume to continue it or --overwrite to start again")
    run_config = json.loads(json.dumps(run_config, default=str))  # as it reads back from run.json
    if exists:
        saved = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).is_file() else None
        if saved is not None and {k: v for k, v in saved.items() if k != "cpcs"} != \
                {k: v for k, v in run_config.items() if k != "cpcs"}:
            raise ParameterError(f"{out} was made with another configuration (see {out / RUN_FILE}); "
                                 "use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_FILE, run_config)


class _Stages:
    """Wall seconds per stage, persisted so a resumed run keeps the earlier timings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: Dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn):
        start = time.perf_counter()
        value = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        atomic_write_json(self.path, self.seconds)
        return value


def _reconstruct(features: torch.Tensor, labels: torch.Tensor, class_names: List[str], feature_config,
                 audio_dir: Path) -> Path:
    """One WAV per distilled sample (features in raw FD-MFCC units), manifest.csv and reconstruction.json."""
    from .reconstruct import class_clip_names, write_audio_set
    labels_list = labels.tolist()
    write_audio_set(features, class_clip_names(labels_list, class_names), [class_names[c] for c in labels_list],
                    feature_config, audio_dir)
    return audio_dir / "manifest.csv"


def run_pipeline(data: str, cpcs: List[int], out: Path, preset: Preset, resume: bool = False,
                 overwrite: bool = False, max_per_class: Optional[int] = None, audio: bool = True,
                 progress: bool = True, strict: bool = False) -> dict:
    """Run (or resume) every stage; returns the results dict written to report.json."""
    from ..data import channel_stats, load_feature_split, load_feature_stats, save_feature_stats, standardize
    from ..data import unstandardize
    from ..evaluate import evaluate_training_set, random_real_subset
    from ..experts import load_trajectories, train_experts
    from ..report import write_report

    cpcs = sorted(set(int(c) for c in cpcs))
    if not cpcs or min(cpcs) < 1:
        raise ParameterError(f"--cpc values must be >= 1, got {cpcs}")
    out = Path(out)
    run_config = {"data": str(data), "cpcs": cpcs, "max_per_class": max_per_class, "preset": preset.to_dict()}
    _prepare_out(out, run_config, resume, overwrite)
    stages = _Stages(out / "stages.json")

    def features_stage():
        split = load_feature_split(data, preset.features, cache_dir=out / "cache", progress=progress,
                                   max_per_class=max_per_class, strict=strict)
        stats_path = out / "feature_stats.pt"
        if preset.standardize:
            if stats_path.is_file():
                mean, std = load_feature_stats(stats_path, preset.features)
            else:
                mean, std = channel_stats(split.x_train)
                save_feature_stats(stats_path, mean, std, preset.features)
            split.x_train, split.x_test = standardize(split.x_train, mean, std), standardize(split.x_test, mean, std)
            return split, (mean, std)
        return split, None

    split, stats = stages.run("features", features_stage)
    smallest = int(torch.bincount(split.y_train, minlength=split.num_classes).min())
    if max(cpcs) > smallest:
        raise ParameterError(f"--cpc {max(cpcs)} exceeds the smallest class's {smallest} training clips")
    from ..distill import distill
    expert_dir = out / "experts"
    stages.run("experts", lambda: train_experts(split, preset.expert, expert_dir, resume=True, progress=progress))
    trajectories = load_trajectories(expert_dir, preset.features)

    eval_path = out / "eval.json"
    accuracy: dict = json.loads(eval_path.read_text()) if eval_path.is_file() else {}

    def evaluate_once(key: List[str], xs, ys, config, lr=None) -> None:
        node = accuracy
        for k in key[:-1]:
            node = node.setdefault(k, {})
        for name in config.models:
            if name in node.get(key[-1], {}):
                continue
            progress_file = out / "eval_progress" / f"{'_'.join(key)}_{name}.pt"
            r = evaluate_training_set(xs, ys, split.x_test, split.y_test, preset.expert.model.replace(name=name),
                                      config, lr=lr, progress=progress, checkpoint=progress_file)
            node.setdefault(key[-1], {})[name] = r
            atomic_write_json(eval_path, accuracy)

    def monitor(xs, ys, lr):
        """One evaluation net, used by distill every eval_every iterations."""
        return evaluate_training_set(xs, ys, split.x_test, split.y_test, preset.expert.model,
                                     preset.eval.replace(num_nets=1), lr=lr)

    distilled_sets, alphas, audio_files = {}, {}, {}
    for cpc in cpcs:
        cpc_dir = out / f"cpc{cpc}"
        distilled_file = cpc_dir / "distilled.pt"
        config = preset.distill.replace(cpc=cpc)
        if not distilled_file.is_file():
            result = stages.run(f"distill cpc{cpc}", lambda: distill(
                split.x_train, split.y_train, trajectories, config, out_dir=cpc_dir, resume=True,
                evaluate_fn=monitor if config.eval_every else None, progress=progress))
            if not distilled_file.is_file():
                result.save(distilled_file, preset.features, preset.expert)
        obj = load_artifact(distilled_file, kind="distilled")
        feats, labels = obj["features"].float(), obj["labels"].long()
        alpha = float(torch.as_tensor(obj["alpha"]))
        distilled_sets[cpc], alphas[f"cpc{cpc}"] = (feats, labels), alpha
        stages.run(f"evaluate cpc{cpc}", lambda: (
            evaluate_once([f"cpc{cpc}", "distilled"], feats, labels, preset.eval, lr=alpha),
            evaluate_once([f"cpc{cpc}", "random"], *random_real_subset(split.x_train, split.y_train, cpc,
                                                                      seed=preset.eval.seed), preset.eval)))
        raw = unstandardize(feats, *stats) if stats is not None else feats
        raw_file = cpc_dir / "distilled_raw.pt"
        if not raw_file.is_file():
            save_artifact(raw_file, "distilled_raw", {"features": raw, "labels": labels},
                          config={"features": preset.features.to_dict(), "class_names": split.class_names})
        manifest = cpc_dir / "audio" / "manifest.csv"
        if audio and not manifest.is_file():
            stages.run(f"audio cpc{cpc}", lambda: _reconstruct(raw, labels, split.class_names, preset.features,
                                                               cpc_dir / "audio"))
        if manifest.is_file():
            audio_files[f"cpc{cpc}"] = str(manifest.relative_to(out))
    stages.run("evaluate full", lambda: evaluate_once(["full"], split.x_train, split.y_train, preset.eval_full))

    results = {"preset": preset.to_dict(), "data": str(data), "cpcs": cpcs, "classes": split.class_names,
               "num_train": len(split.y_train), "num_test": len(split.y_test),
               "accuracy": {k: v for k, v in accuracy.items() if k == "full" or k in {f"cpc{c}" for c in cpcs}},
               "alpha": alphas, "stage_seconds": stages.seconds, "audio": audio_files,
               "skipped": [list(s) for s in split.skipped]}
    write_report(out, results, distilled_sets)
    return results


def main(args: argparse.Namespace) -> int:
    preset = apply_overrides(get_preset(args.preset), args)
    results = run_pipeline(args.data, args.cpc, args.out, preset, resume=args.resume, overwrite=args.overwrite,
                           max_per_class=args.max_per_class, audio=not args.no_audio, strict=args.strict)
    for cpc in results["cpcs"]:
        acc = results["accuracy"][f"cpc{cpc}"]
        for model in acc["distilled"]:
            d, r = acc["distilled"][model], acc["random"][model]
            print(f"CPC {cpc:3d} {model:8s} distilled {100 * d['mean']:.2f} +- {100 * d['std']:.2f} %   "
                  f"random real {100 * r['mean']:.2f} +- {100 * r['std']:.2f} %")
    for model, r in results["accuracy"].get("full", {}).items():
        print(f"full data {model:8s} {100 * r['mean']:.2f} +- {100 * r['std']:.2f} %")
    print(f"report: {args.out / 'report.md'}")
    return 0
