"""The whole pipeline, each stage resumable: :func:`run_pipeline` (what ``ddfad run`` calls).

features (cached) -> validation split carved from the training clips -> per-coefficient standardisation
-> experts -> per CPC: distil, evaluate (distilled / random real / herding coreset of the same size, on the
test split for the report and on the validation split for every choice), reconstruct to WAVs -> full data
-> report.json, report.md, report.html (every distilled clip to listen to, beside a real one), plots.

One protocol for every row: the preset's augmentation is used by expert training, the distillation unroll
and every evaluation (distilled, baselines and full data alike).

A failure in one stage of one CPC (distillation, evaluation, reconstruction, a plot) is recorded in the
report and the run goes on with the other stages and CPCs; the command then exits 1 naming what failed.

Layout of ``--out``: run.json (the configuration), cache/, experts/ (each trajectory carries the
standardisation), cpcN/ (distillation checkpoint, history, distilled.pt with everything evaluation and
reconstruction need, ``audio/*.wav`` + audio/manifest.csv + reconstruction.json), eval.json (the accuracies
computed so far), stages.json (wall seconds per stage), the report files.

A resumed run with more distillation iterations continues a finished run: the distillations go on from
their checkpoints and only what depends on them (their evaluations and audio) is redone.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .. import pause
from ..config import ROUNDING_ONLY_FIELDS
from ..errors import FolderBusyError, OutputError, ParameterError
from ..io import atomic_write_json, load_artifact, read_json
from ..outputs import MARKER, check_deletable, clear, mark
from ..presets import Preset

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def _comparable(run_config: dict) -> dict:
    """The parts of run.json that must match to resume (the CPC list and the iteration count may grow)."""
    out = json.loads(json.dumps(run_config, default=str))
    try:                             # fields added since the run began hold their defaults
        out["preset"] = Preset.from_dict(out["preset"]).to_dict()
    except (KeyError, TypeError, ParameterError):
        pass
    out = json.loads(json.dumps(out, default=str))
    out.pop("cpcs", None)
    out.pop("features_choice", None)                   # how the features were chosen: the preset holds them
    out.get("preset", {}).get("distill", {}).pop("iterations", None)
    out.get("preset", {}).get("distill", {}).pop("checkpoint_every", None)
    for stage in ("expert", "eval", "eval_full"):      # these change speed and float32 rounding only
        for key in ROUNDING_ONLY_FIELDS:
            out.get("preset", {}).get(stage, {}).pop(key, None)
    return out


def _differences(saved, now, path: str = "") -> List[str]:
    """The settings that differ between two run configurations, as "where: saved -> now" lines."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [line for key in sorted(set(saved) | set(now), key=str)
                for line in _differences(saved.get(key), now.get(key), f"{path}.{key}" if path else str(key))]
    return [] if saved == now else [f"{path or 'configuration'}: {saved!r} in the run, {now!r} now"]


def _prepare_out(out: Path, run_config: dict, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise ParameterError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, not a folder")
    exists = out.exists() and any(p.name not in ("cache", MARKER) for p in out.iterdir())  # cache: ddfad features'
    if exists and overwrite:       # only a run folder (marker, or run.json of an earlier release), never the data's
        from ..data.sources import input_paths
        check_deletable(out, "run", input_paths(run_config["data"]), legacy=(RUN_FILE,))
        clear(out)
        exists = False
    if exists and not resume:
        raise ParameterError(f"{out} exists; pass --resume to continue it or --overwrite to start again")
    if exists:
        saved = read_json(out / RUN_FILE, "run configuration") if (out / RUN_FILE).is_file() else None
        if saved is not None and _comparable(saved) != _comparable(run_config):
            changed = "; ".join(_differences(_comparable(saved), _comparable(run_config))[:5])
            raise ParameterError(f"{out} was made with another configuration (see {out / RUN_FILE}): {changed}; "
                                 "pass the same options, or use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    if not exists:
        mark(out, "run")                   # a folder this command made: a later --overwrite may empty it
    atomic_write_json(out / RUN_FILE, json.loads(json.dumps(run_config, default=str)))


class _Stages:
    """Wall seconds per stage, persisted so a resumed run keeps the earlier timings; and the failures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: Dict[str, float] = read_json(path, "stage timings") if path.is_file() else {}
        self.failures: List[dict] = []

    def run(self, name: str, fn: Callable):
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            atomic_write_json(self.path, self.seconds)

    def guarded(self, name: str, fn: Callable, progress: bool = True):
        """``fn()``, but an exception is recorded (and printed) instead of ending the run; returns None then."""
        try:
            return fn()
        except (OutputError, FolderBusyError):    # a full disk or a busy folder stops every stage alike
            raise
        except Exception as exc:      # one stage of one CPC must not end the whole run
            message = f"{type(exc).__name__}: {exc}"
            self.failures.append({"stage": name, "error": message,
                                  "traceback": traceback.format_exc(limit=6)})
            log.error("stage %s failed: %s", name, message)
            if progress:
                print(f"ddfad run: stage '{name}' failed ({message}); going on with the others", flush=True)
            return None


def _without_failed(accuracy: dict, failures: List[dict]) -> dict:
    """The accuracies less those of stages that failed in this run (an earlier run's numbers for a set that
    could not be made again are not its numbers)."""
    failed = {f["stage"] for f in failures}
    out = {k: v for k, v in accuracy.items() if k not in failed and not (k == "full" and "evaluate full" in failed)}
    if "ablation" in out:
        out["ablation"] = {k: v for k, v in out["ablation"].items() if f"ablation {k}" not in failed}
    return out


def _channels(split, k: int):
    """``split`` with only its first ``k`` feature channels (and their standardisation)."""
    import dataclasses

    from ..data import FeatureNorm, first_channels
    cut = (lambda x: None if x is None else first_channels(x, k))
    norm = None if split.norm is None else FeatureNorm(split.norm.mean[:k], split.norm.std[:k])
    return dataclasses.replace(split, x_train=cut(split.x_train), x_test=cut(split.x_test), x_val=cut(split.x_val),
                               norm=norm)


def load_distilled(path: Path) -> dict:
    """A distilled set as evaluation uses it: features, labels, training targets (soft labels when learned),
    its learned step size alpha and its iteration count."""
    obj = load_artifact(path, kind="distilled")
    return {"features": obj["features"].float(), "labels": obj["labels"].long(),
            "targets": obj["soft_labels"].float() if "soft_labels" in obj else obj["labels"].long(),
            "alpha": float(torch.as_tensor(obj["alpha"])),
            "iterations": len(obj.get("history", {}).get("loss", []))}


def finished_run(folder: Path, cpc: Optional[int] = None) -> Tuple[dict, Preset, int]:
    """run.json, the preset and a CPC (``cpc``, default the largest) of a finished ``ddfad run`` folder, for the
    commands that build on one (continual, nas); ParameterError when the folder or the CPC is not there."""
    run_file = Path(folder) / RUN_FILE
    if not run_file.is_file():
        raise ParameterError(f"{folder} is not a ddfad run folder (no {RUN_FILE})")
    run = read_json(run_file, "run configuration")
    cpcs = sorted(int(p.name[3:]) for p in Path(folder).glob("cpc*") if (p / "distilled.pt").is_file())
    if not cpcs:
        raise ParameterError(f"{folder} holds no distilled set (cpcN/distilled.pt)")
    cpc = cpcs[-1] if cpc is None else cpc
    if cpc not in cpcs:
        raise ParameterError(f"--cpc {cpc}: {folder} has distilled sets for CPC {cpcs}")
    return run, Preset.from_dict(run["preset"]), cpc


def run_split(folder: Path, run: dict, preset: Preset, device: torch.device):
    """The feature split of a finished run (its cache, validation split and standardisation), on ``device``."""
    from ..data import load_feature_split
    split = load_feature_split(run["data"], preset.features, cache_dir=Path(folder) / "cache",
                               max_per_class=run.get("max_per_class"), val_fraction=preset.val_fraction,
                               standardize=preset.standardize)
    return split.to(device)


def run_pipeline(data: str, cpcs: List[int], out: Path, preset: Preset, resume: bool = False,
                 overwrite: bool = False, max_per_class: Optional[int] = None, audio: bool = True,
                 progress: bool = True, strict: bool = False, device: Optional[torch.device] = None,
                 in_memory: Optional[bool] = None, workers: Optional[int] = None,
                 feature_choice: Optional[dict] = None, callbacks=None) -> dict:
    """Run (or resume) every stage; returns the results dict written to report.json (with "failures").
    Nets train and sets are distilled on ``device`` (default: the CPU); files hold CPU tensors.
    ``in_memory`` / ``workers``: where training reads the features and how many processes decode them
    (:func:`ddfad_fast.data.load_feature_split`); ``preset.distill.max_memory_gb`` limits every stage.
    ``feature_choice``: how ``preset.features`` was chosen (:meth:`ddfad_fast.data.scan.FeatureChoice.to_dict`),
    stored in run.json and the results. ``callbacks``: the :class:`~ddfad_fast.train.callbacks.Callback` objects
    the experts, distillations and evaluations report to (scopes such as ``cpcN``, ``cpcN/distilled/convnet``,
    ``ablation/chK``)."""
    from ..data import load_feature_split
    from ..train.distill import distill
    from ..train.evaluate import evaluate_training_set, expert_soft_labels, herding_subset, random_real_subset
    from .stats import strip_correctness, yardstick
    from ..train.experts import load_trajectories, train_experts
    from ..train.callbacks import as_callbacks
    from ..train.models import build_model
    from ..provenance import provenance
    from .report import write_report
    from .report_html import write_html_report
    from .export import write_distilled_audio

    cpcs = sorted(set(int(c) for c in cpcs))
    if not cpcs or min(cpcs) < 1:
        raise ParameterError(f"--cpc values must be >= 1, got {cpcs}")
    out = Path(out)
    run_config = {"data": str(data), "cpcs": cpcs, "max_per_class": max_per_class, "preset": preset.to_dict()}
    if feature_choice is not None:
        run_config["features_choice"] = feature_choice
    _prepare_out(out, run_config, resume, overwrite)
    started = provenance()          # the code and machine of this session (a resumed run: of the last one)
    stages = _Stages(out / "stages.json")
    callbacks = as_callbacks(callbacks)

    def features_stage():
        from ..train.memory import training_reserve
        ex, full = preset.expert, preset.eval_full
        reserve = training_reserve((ex.model, ex.batch_size, ex.num_experts if ex.ensemble else 1),
                                   (ex.model, full.batch_size, full.num_nets if full.ensemble else 1))
        split = load_feature_split(data, preset.features, cache_dir=out / "cache", progress=progress,
                                   max_per_class=max_per_class, strict=strict, val_fraction=preset.val_fraction,
                                   in_memory=in_memory, workers=workers, max_memory_gb=preset.distill.max_memory_gb,
                                   reserve=reserve, standardize=preset.standardize)
        return split

    split = stages.run("features", features_stage)
    device = torch.device("cpu") if device is None else torch.device(device)
    x_train_cpu = split.x_train                     # for the report's pictures
    split = split.to(device)
    smallest = int(torch.bincount(split.y_train, minlength=split.num_classes).min())
    if max(cpcs) > smallest:
        raise ParameterError(f"--cpc {max(cpcs)} exceeds the smallest class's {smallest} training clips "
                             f"(after the validation split)")
    expert_dir = out / "experts"
    stages.run("experts", lambda: train_experts(split, preset.expert, expert_dir, resume=True, progress=progress,
                                                callbacks=callbacks))
    trajectories = load_trajectories(expert_dir, preset.features)
    embed_net = build_model(preset.expert.model, split.in_shape, split.num_classes)
    has_val = split.x_val is not None

    eval_path = out / "eval.json"
    accuracy: dict = read_json(eval_path, "accuracies") if eval_path.is_file() else {}

    def evaluate_once(key: List[str], xs, ys, config, models, lr=None, tag=None, data=None) -> None:
        """Evaluate (xs, ys) on each model unless eval.json holds a result with the same ``tag``; tested on
        ``data``'s test and validation clips (default: the run's split)."""
        data = data or split
        node = accuracy
        for k in key[:-1]:
            node = node.setdefault(k, {})
        for name in models:
            done = node.get(key[-1], {}).get(name)
            if done is not None and done.get("tag") == tag:
                continue
            progress_file = out / "eval_progress" / f"{'_'.join(key)}_{name}.pt"
            if done is not None:
                progress_file.unlink(missing_ok=True)
            r = evaluate_training_set(xs, ys, data.x_test, data.y_test, preset.expert.model.replace(name=name),
                                      config, lr=lr, progress=progress, checkpoint=progress_file,
                                      x_val=data.x_val, y_val=data.y_val, callbacks=callbacks.scoped("/".join(key)))
            r["tag"] = tag
            node.setdefault(key[-1], {})[name] = r
            atomic_write_json(eval_path, accuracy)

    def monitor(xs, ys, lr):
        """One evaluation net on the validation split (never the test split), every eval_every iterations."""
        _, x_mon, y_mon = split.monitor_set()
        return evaluate_training_set(xs, ys, x_mon, y_mon, preset.expert.model, preset.eval.replace(num_nets=1),
                                     lr=lr)

    distilled_sets, alphas, audio_files, iterations = {}, {}, {}, {}
    soft = preset.distill.labels == "soft"
    teachers = trajectories.snapshots(preset.distill.label_expert_epoch).to(device) if soft else None
    cross_cpc = preset.cross_cpc if preset.cross_cpc in cpcs else None

    def cpc_stage(cpc: int) -> None:
        cpc_dir = out / f"cpc{cpc}"
        distilled_file = cpc_dir / "distilled.pt"
        config = preset.distill.replace(cpc=cpc)
        current = load_distilled(distilled_file) if distilled_file.is_file() else None
        if current is None or current["iterations"] < config.iterations:
            result = stages.run(f"distill cpc{cpc}", lambda: distill(
                split.x_train, split.y_train, trajectories, config, out_dir=cpc_dir, resume=True,
                evaluate_fn=monitor if config.eval_every else None, progress=progress, callbacks=callbacks))
            result.save(distilled_file, preset.features, preset.expert, split.class_names)
            current = load_distilled(distilled_file)
            shutil.rmtree(cpc_dir / "audio", ignore_errors=True)          # made from the previous set
        feats, labels = current["features"], current["labels"]
        distilled_sets[cpc], alphas[f"cpc{cpc}"] = (feats, labels), current["alpha"]
        feats, targets = feats.to(device), current["targets"].to(device)
        iterations[f"cpc{cpc}"] = current["iterations"]
        tag = f"iterations={current['iterations']}"
        models = preset.eval.models + (preset.cross_models if cpc == cross_cpc else ())
        stages.run(f"evaluate cpc{cpc}", lambda: evaluate_once(
            [f"cpc{cpc}", "distilled"], feats, targets, preset.eval, models, lr=current["alpha"], tag=tag))
        baselines = {"random": lambda: random_real_subset(split.x_train, split.y_train, cpc, seed=preset.eval.seed),
                     "herding": lambda: herding_subset(split.x_train, split.y_train, cpc, embed_net,
                                                       trajectories.params[0][-1])}
        for name in preset.baselines:       # other architectures: the distilled set and random real clips
            xs, ys = baselines[name]()
            stages.run(f"evaluate cpc{cpc}", lambda: evaluate_once(
                [f"cpc{cpc}", name], xs, ys, preset.eval, models if name == "random" else preset.eval.models))
            if soft:      # the same clips with the same kind of labels as the distilled set: the experts' logits
                logits = expert_soft_labels(embed_net, teachers, xs, ys)
                stages.run(f"evaluate cpc{cpc}", lambda: evaluate_once(
                    [f"cpc{cpc}", f"{name}_soft"], xs, logits, preset.eval, preset.eval.models))
        manifest = cpc_dir / "audio" / "manifest.csv"
        if audio and not manifest.is_file():
            stages.guarded(f"audio cpc{cpc}", lambda: stages.run(
                f"audio cpc{cpc}", lambda: write_distilled_audio(distilled_file, cpc_dir / "audio")), progress)
        if manifest.is_file():
            audio_files[f"cpc{cpc}"] = str(manifest.relative_to(out))

    for cpc in cpcs:
        stages.guarded(f"cpc{cpc}", lambda: cpc_stage(cpc), progress)

    def ablation_stage(k: int) -> None:
        """Experts, distillation at cross_cpc and evaluation with the first ``k`` channels only."""
        sub = _channels(split, k)
        folder = out / "ablation" / f"ch{k}"
        stages.run(f"ablation ch{k}", lambda: train_experts(sub, preset.expert, folder / "experts", resume=True,
                                                            progress=progress,
                                                            callbacks=callbacks.scoped(f"ablation/ch{k}")))
        traj = load_trajectories(folder / "experts", preset.features)
        distilled_file = folder / f"cpc{cross_cpc}" / "distilled.pt"
        config = preset.distill.replace(cpc=cross_cpc)
        if not distilled_file.is_file() or load_distilled(distilled_file)["iterations"] < config.iterations:
            result = stages.run(f"ablation ch{k}", lambda: distill(
                sub.x_train, sub.y_train, traj, config, out_dir=distilled_file.parent, resume=True, progress=progress,
                callbacks=callbacks.scoped(f"ablation/ch{k}")))
            result.save(distilled_file, preset.features, preset.expert, split.class_names)
        current = load_distilled(distilled_file)
        tag = f"iterations={current['iterations']}"
        models = ("convnet",)
        rows = [("distilled", current["features"].to(device), current["targets"].to(device), preset.eval,
                 current["alpha"], tag),
                ("random", *random_real_subset(sub.x_train, sub.y_train, cross_cpc, seed=preset.eval.seed),
                 preset.eval, None, None),
                ("full", sub.x_train, sub.y_train, preset.eval_full, None, None)]
        for name, xs, ys, config_, lr, tag_ in rows:
            stages.run(f"ablation ch{k}", lambda: evaluate_once(["ablation", f"ch{k}", name], xs, ys, config_, models,
                                                                lr=lr, tag=tag_, data=sub))

    if cross_cpc is not None:
        for k in preset.ablation_channels:
            stages.guarded(f"ablation ch{k}", lambda: ablation_stage(k), progress)
    stages.guarded("evaluate full", lambda: stages.run("evaluate full", lambda: evaluate_once(
        ["full"], split.x_train, split.y_train, preset.eval_full, preset.eval_full.models)), progress)

    results = {"preset": preset.to_dict(), "data": str(data), "cpcs": cpcs, "classes": split.class_names,
               "num_train": len(split.y_train), "num_val": len(split.y_val) if has_val else 0,
               "num_test": len(split.y_test), "reported_split": "test",
               "accuracy": _without_failed({k: v for k, v in accuracy.items() if k in ("full", "ablation") or
                                            k in {f"cpc{c}" for c in cpcs}}, stages.failures),
               "cross_cpc": cross_cpc,
               "alpha": alphas, "iterations": iterations, "stage_seconds": stages.seconds,
               "threads": torch.get_num_threads(), "device": str(device), "audio": audio_files, "machine": started,
               "skipped": [list(s) for s in split.skipped]}
    results.update(yardstick(results["accuracy"], cpcs, preset.eval.models, soft=soft))
    results["accuracy"] = strip_correctness(results["accuracy"])     # eval.json keeps the per-clip results
    results["failures"] = stages.failures
    if feature_choice is not None:
        results["features_choice"] = feature_choice
    pause.point("report")
    stages.guarded("report", lambda: write_report(out, results, distilled_sets), progress)
    known = len(stages.failures)
    pause.point("report")
    stages.guarded("report.html", lambda: write_html_report(
        out, results, distilled_sets, preset.features, split.paths_train, split.y_train.tolist(), x_train_cpu),
        progress)
    if len(stages.failures) > known:            # report.md and report.json list that failure too
        stages.guarded("report", lambda: write_report(out, results, distilled_sets), progress)
    return results
