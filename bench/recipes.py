"""Recipe sweeps for distillation quality, scored on the VALIDATION split only (never on test).

One call trains (or reuses) a set of experts, distils CPC clips per class with one recipe and trains
fresh nets on the distilled set and on the same-size baselines (random real clips, herding coreset),
each scored on the validation split carved from FSDD's training data. Every call appends one JSON
line to ``--log`` (default bench/results/recipes.jsonl) with the recipe, the accuracies and the seconds
of every stage, so the choices behind the presets can be traced and repeated:

    python bench/recipes.py --cpc 10 --tag soft --distill labels=soft,iterations=100 --aug 8,10,3

Overrides are ``name=value`` lists for ExpertConfig (``--expert``), DistillConfig (``--distill``) and
EvalConfig (``--eval``); ``--aug S,T,F`` sets one augmentation for all three (``--aug none`` for none);
``--norm channel|coefficient`` the standardisation. Experts are cached in ``--work`` by their config.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info  # noqa: E402

from ddfad_fast.config import Augment, DistillConfig, FeatureConfig, EvalConfig, ExpertConfig, ModelConfig  # noqa: E402
from ddfad_fast.data import FeatureNorm, load_feature_split  # noqa: E402
from ddfad_fast.train.distill import distill  # noqa: E402
from ddfad_fast.train.evaluate import evaluate_training_set, herding_subset, random_real_subset  # noqa: E402
from ddfad_fast.train.experts import load_trajectories, train_experts  # noqa: E402
from ddfad_fast.io import load_artifact  # noqa: E402
from ddfad_fast.train.models import build_model  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"


def _parse(text: str) -> dict:
    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        key, value = item.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        if value in ("true", "false", "none"):
            value = {"true": True, "false": False, "none": None}[value]
        out[key] = value
    return out


class _ChannelNorm(FeatureNorm):
    """One mean/std per channel (the old rule), for comparison."""

    @classmethod
    def fit(cls, x):
        x64 = x.double()
        shape = (3, x.shape[2], 1)
        mean = x64.mean(dim=(0, 2, 3)).view(3, 1, 1).expand(shape).contiguous()
        std = x64.std(dim=(0, 2, 3)).view(3, 1, 1).expand(shape).contiguous()
        return cls(mean.float(), std.float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cpc", type=int, action="append", default=None)
    parser.add_argument("--feature-preset", choices=("fsdd", "speech16k"), default="fsdd")
    parser.add_argument("--duration", type=float, default=None, help="clip length in seconds (default: the preset's)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--expert", default="")
    parser.add_argument("--distill", default="")
    parser.add_argument("--eval", default="")
    parser.add_argument("--aug", default="8,10,3")
    parser.add_argument("--norm", choices=("channel", "coefficient"), default="coefficient")
    parser.add_argument("--baselines", default="random,herding", help="comma-separated: random,herding,full")
    parser.add_argument("--no-distill", action="store_true")
    parser.add_argument("--save", action="store_true", help="keep each distilled set as WORK/TAG_cpcN.pt")
    parser.add_argument("--load", default=None, help="evaluate WORK/LOAD_cpcN.pt (saved with --save) instead of distilling")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--log", type=Path, default=RESULTS_DIR / "recipes.jsonl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    augment = None if args.aug == "none" else Augment(*map(int, args.aug.split(",")))
    model = ModelConfig(width=args.width, depth=3)
    expert = ExpertConfig(num_experts=5, epochs=15, batch_size=64, model=model, augment=augment)
    expert = expert.replace(**_parse(args.expert))
    eval_overrides = _parse(args.eval)
    full_epochs = int(eval_overrides.pop("full_epochs", 30))
    eval_config = EvalConfig(num_nets=3, epochs=300, augment=augment).replace(**eval_overrides)
    times = {}

    t0 = time.perf_counter()
    features = getattr(FeatureConfig, args.feature_preset)()
    if args.duration is not None:
        features = features.replace(fixed_length=int(round(args.duration * features.sample_rate)))
    split = load_feature_split(args.data, features, cache_dir=args.work / "cache", val_fraction=0.1, progress=False)
    norm = (_ChannelNorm if args.norm == "channel" else FeatureNorm).fit(split.x_train)
    split = split.standardized(FeatureNorm(norm.mean, norm.std))
    for name in ("x_train", "y_train", "x_val", "y_val"):
        setattr(split, name, getattr(split, name).to(device))
    x_val, y_val = split.x_val, split.y_val
    times["features"] = time.perf_counter() - t0

    key = hashlib.sha256(json.dumps([expert.to_dict(), args.norm, features.to_dict()], sort_keys=True).encode()).hexdigest()[:12]
    expert_dir = args.work / f"experts_{key}"
    t0 = time.perf_counter()
    train_experts(split, expert, expert_dir, resume=True, progress=False)
    times["experts"] = time.perf_counter() - t0
    traj = load_trajectories(expert_dir)
    expert_val = [load_artifact_acc(p) for p in sorted(expert_dir.glob("expert_*.pt")) if "partial" not in p.name]
    net = build_model(model, split.in_shape, split.num_classes)
    rows = []
    for cpc in args.cpc or [10]:
        config = DistillConfig(cpc=cpc, syn_steps=20, expert_epochs=2, max_start_epoch=min(10, expert.epochs - 2),
                               iterations=100, lr_data=1000.0, lr_alpha=1e-5, alpha_init=0.01, batch_syn=None,
                               checkpoint_every=0, eval_every=0, augment=augment)
        config = config.replace(**_parse(args.distill))
        row = {"tag": args.tag, "data": str(args.data), "features": features.to_dict(), "cpc": cpc, "norm": args.norm, "expert": expert.to_dict(),
               "distill": config.to_dict(), "eval": eval_config.to_dict(), "expert_val_acc": expert_val,
               "split": "val", "acc": {}, "seconds": dict(times)}
        if args.load:
            obj = load_artifact(args.work / f"{args.load}_cpc{cpc}.pt", kind="distilled")
            result = SimpleNamespace(features=obj["features"].to(device), labels=obj["labels"].to(device),
                                     soft_labels=obj["soft_labels"].to(device) if "soft_labels" in obj else None,
                                     alpha=float(obj["alpha"]), history=obj["history"])
            row["loaded"] = args.load
        elif not args.no_distill:
            # checkpoints keyed by the recipe without its iteration count: a later call with more
            # iterations continues this distillation instead of starting again
            recipe = {k: v for k, v in config.to_dict().items() if k not in ("iterations", "checkpoint_every")}
            ckpt = args.work / ("distill_" + hashlib.sha256(json.dumps([recipe, key], sort_keys=True)
                                                            .encode()).hexdigest()[:12])
            t0 = time.perf_counter()
            result = distill(split.x_train, split.y_train, traj, config.replace(checkpoint_every=10), out_dir=ckpt,
                             resume=True, progress=False)
            row["seconds"]["distill"] = time.perf_counter() - t0
            row["distill_folder"] = str(ckpt)
            if args.save:
                result.save(args.work / f"{args.tag}_cpc{cpc}.pt", split.feature_config, expert)
        if args.load or not args.no_distill:
            row["alpha"] = result.alpha
            row["loss_first_last"] = [result.history["loss"][0], result.history["loss"][-1]] if result.history["loss"] else []
            y_syn = result.soft_labels if result.soft_labels is not None else result.labels
            t0 = time.perf_counter()
            r = evaluate_training_set(result.features, y_syn, x_val, y_val, model, eval_config, lr=result.alpha)
            row["acc"]["distilled"] = [r["mean"], r["std"]]
            row["seconds"]["eval distilled"] = time.perf_counter() - t0
        sets = {}
        wanted = args.baselines.split(",") if args.baselines else []
        if "random" in wanted:
            sets["random"] = random_real_subset(split.x_train, split.y_train, cpc, seed=0)
        if "herding" in wanted:
            sets["herding"] = herding_subset(split.x_train, split.y_train, cpc, net, traj.params[0][-1])
        for name, (xs, ys) in sets.items():
            t0 = time.perf_counter()
            r = evaluate_training_set(xs, ys, x_val, y_val, model, eval_config)
            row["acc"][name] = [r["mean"], r["std"]]
            row["seconds"][f"eval {name}"] = time.perf_counter() - t0
        if "full" in wanted:
            full = eval_config.replace(epochs=full_epochs)
            t0 = time.perf_counter()
            r = evaluate_training_set(split.x_train, split.y_train, x_val, y_val, model, full)
            row["acc"]["full"] = [r["mean"], r["std"]]
            row["seconds"]["eval full"] = time.perf_counter() - t0
        row["machine"] = {k: v for k, v in machine_info().items() if k in ("date", "git_commit", "gpu", "cpu_count",
                                                                            "load_average_1_5_15", "torch",
                                                                            "ddfad_backends")}
        row["device"] = str(device)
        rows.append(row)
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with open(args.log, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        accs = "  ".join(f"{k} {100 * v[0]:.1f}±{100 * v[1]:.1f}" for k, v in row["acc"].items())
        print(f"[{args.tag}] cpc {cpc}: {accs}  (val; s: " +
              ", ".join(f"{k} {v:.0f}" for k, v in row["seconds"].items()) + ")", flush=True)


def load_artifact_acc(path: Path) -> float:
    obj = load_artifact(path, kind="trajectory")
    return float(obj["monitor_acc"][-1])


if __name__ == "__main__":
    main()
