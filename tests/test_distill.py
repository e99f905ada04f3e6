"""MTT distillation: exact resume, Ctrl-C, refused checkpoints, --max-memory, learning, the CLI."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers import compile_failure, tone_dataset
from ddfad_fast.cli import main
from ddfad_fast.config import Augment, DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig
from ddfad_fast.data import FeatureSplit
from ddfad_fast.train.distill import CHECKPOINT_NAME, DistillationDiverged, distill, plan_memory
from ddfad_fast.errors import FileFormatError, ParameterError, ResourceError
from ddfad_fast.train.evaluate import evaluate_training_set, random_real_subset
from ddfad_fast.train.experts import load_trajectories, train_experts
from ddfad_fast.io import load_artifact
from ddfad_fast.train.models import build_model
from helpers import C, SHAPE, make_split, reference_soft_labels

MODEL = ModelConfig(width=4, depth=2)
EXPERTS = ExpertConfig(num_experts=2, epochs=5, batch_size=16, lr=0.05, model=MODEL)
BASE = DistillConfig(cpc=2, syn_steps=4, expert_epochs=2, max_start_epoch=2, iterations=8, lr_data=10.0,
                     lr_alpha=1e-4, batch_syn=3, augment=Augment(max_shift=3, time_mask=5, freq_mask=2), compile=False,
                     checkpoint_every=3, eval_every=0)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    split = make_split()
    folder = tmp_path_factory.mktemp("experts")
    train_experts(split, EXPERTS, folder, progress=False)
    return split, load_trajectories(folder)


@pytest.fixture(scope="module")
def hard_setup(tmp_path_factory):
    """Like make_split, but class means closer (scale 1 instead of 2) so that one random clip per class
    is a poor training set; more clips."""
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(C, *SHAPE, generator=gen)

    def draw(n):
        y = torch.arange(n) % C
        return means[y] + torch.randn(n, *SHAPE, generator=gen), y

    (xt, yt), (xs, ys) = draw(96), draw(96)
    split = FeatureSplit(xt, yt, xs, ys, [str(i) for i in range(C)], FeatureConfig(), [])
    folder = tmp_path_factory.mktemp("hard_experts")
    train_experts(split, EXPERTS.replace(epochs=6), folder, progress=False)
    return split, load_trajectories(folder)


def _same(a, b):
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels) and a.alpha == b.alpha
    assert (a.soft_labels is None) == (b.soft_labels is None)
    assert a.soft_labels is None or torch.equal(a.soft_labels, b.soft_labels)
    for key in ("loss", "alpha", "expert", "start_epoch", "eval"):
        assert a.history[key] == b.history[key], key


@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_resume_is_exact(setup, tmp_path, labels):
    """Interrupted (Ctrl-C inside iteration 6, and a shorter run extended) == uninterrupted, bit for bit;
    learned soft labels included."""
    split, traj = setup
    calls = []

    def monitor(xs, ys, lr):
        calls.append(len(calls))
        return {"mean": float(xs.abs().mean()), "std": 0.0}

    config = BASE.replace(eval_every=2, labels=labels)
    full = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "full", evaluate_fn=monitor,
                   progress=False)
    assert len(full.history["loss"]) == 8 and [e["iteration"] for e in full.history["eval"]] == [2, 4, 6, 8]

    def interrupting(xs, ys, lr):
        if len(calls) == 6:            # 4 calls of the full run, then iterations 2 and 4 of this one
            raise KeyboardInterrupt    # Ctrl-C while iteration 6 is being evaluated
        return monitor(xs, ys, lr)

    with pytest.raises(KeyboardInterrupt):
        distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "cut", evaluate_fn=interrupting,
                progress=False)
    saved = load_artifact(tmp_path / "cut" / CHECKPOINT_NAME, kind="distill_checkpoint")
    assert saved["iteration"] == 5 and len(saved["history"]["loss"]) == 5
    assert json.loads((tmp_path / "cut" / "history.json").read_text())["loss"] == saved["history"]["loss"]
    resumed = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "cut", resume=True,
                      evaluate_fn=monitor, progress=False)
    _same(resumed, full)
    assert len(resumed.history["sessions"]) == 2 and resumed.history["sessions"][1]["start_iteration"] == 5

    short = config.replace(iterations=4)
    distill(split.x_train, split.y_train, traj, short, out_dir=tmp_path / "ext", evaluate_fn=monitor, progress=False)
    extended = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "ext", resume=True,
                       evaluate_fn=monitor, progress=False)
    _same(extended, full)
    # a finished run resumes to the same result without any work
    again = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "full", resume=True,
                    progress=False)
    _same(again, full)
    if labels == "soft":          # the labels were learned: they moved away from the teacher's logits
        net = build_model(traj.expert_config.model, traj.in_shape, traj.num_classes)
        start = distill(split.x_train, split.y_train, traj, config.replace(iterations=0), progress=False)
        torch.testing.assert_close(start.soft_labels, reference_soft_labels(net, traj, start.features, start.labels))
        assert not torch.allclose(full.soft_labels, start.soft_labels)


def test_refuses_foreign_checkpoints(setup, tmp_path):
    split, traj = setup
    config = BASE.replace(iterations=2)
    distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path, progress=False)
    with pytest.raises(ParameterError, match="resume"):
        distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path, progress=False)
    with pytest.raises(FileFormatError, match="different config"):
        distill(split.x_train, split.y_train, traj, config.replace(lr_data=5.0), out_dir=tmp_path, resume=True,
                progress=False)
    with pytest.raises(FileFormatError, match="data"):
        distill(split.x_train + 1, split.y_train, traj, config, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(FileFormatError, match="batch_syn"):
        distill(split.x_train, split.y_train, traj, config.replace(batch_syn=4), out_dir=tmp_path, resume=True,
                progress=False)
    # settings that do not change the result may differ
    distill(split.x_train, split.y_train, traj, config.replace(iterations=3, checkpoint_every=1, eval_every=7),
            out_dir=tmp_path, resume=True, progress=False)


def test_max_memory(setup, tmp_path):
    split, traj = setup
    with pytest.raises(ResourceError, match=r"needs about .* GiB.*max_memory_gb is 0.001 GiB"):
        distill(split.x_train, split.y_train, traj, BASE.replace(max_memory_gb=0.001), out_dir=tmp_path / "o",
                progress=False)
    assert not (tmp_path / "o").exists()                 # refused before anything started
    # the benchmark's shapes (estimates only: nothing of this size is allocated)
    net = build_model(ModelConfig(width=64, depth=3), (3, 20, 101), 10)
    config = DistillConfig(cpc=10, unroll="naive", syn_steps=40)
    naive = plan_memory(net, 100, config).estimate_bytes
    reverse = plan_memory(net, 100, config.replace(unroll="reverse")).estimate_bytes
    assert reverse < naive / 8
    limit = (reverse + naive) / 2 / 2 ** 30
    plan = plan_memory(net, 100, config.replace(max_memory_gb=limit))
    assert (plan.unroll, plan.batch_syn) == ("reverse", None) and plan.changed == ["unroll naive -> reverse"]
    # a synthetic set too big for one whole-set step at the limit: the batch shrinks
    whole = plan_memory(net, 500, DistillConfig(cpc=50, syn_steps=10))
    small = plan_memory(net, 500, DistillConfig(cpc=50, syn_steps=10, batch_syn=50))
    limit = (whole.estimate_bytes + small.estimate_bytes) / 2 / 2 ** 30
    plan = plan_memory(net, 500, DistillConfig(cpc=50, syn_steps=10, max_memory_gb=limit))
    assert plan.unroll == "reverse" and plan.batch_syn is not None and 50 <= plan.batch_syn < 500
    assert plan.estimate_bytes <= limit * 2 ** 30


@pytest.mark.parametrize("at_resume", ["more", "less"])
def test_resume_reuses_the_memory_plan(setup, tmp_path, monkeypatch, at_resume):
    """The plan for --max-memory is made once and stored in the checkpoint: a resumed run with the same
    settings is neither refused (more memory in use now) nor given another batch (less in use now), and
    ends exactly where an uninterrupted run ends."""
    import ddfad_fast.train.memory as memory_mod
    from ddfad_fast.train.distill import preflight
    split, traj = setup
    gib = 2 ** 30
    in_use = {"bytes": gib}
    monkeypatch.setattr(memory_mod, "_process_bytes", lambda device: in_use["bytes"])
    net = build_model(traj.expert_config.model, traj.in_shape, traj.num_classes)
    free = BASE.replace(batch_syn=None)
    whole, half = (plan_memory(net, 2 * C, free.replace(batch_syn=b)).estimate_bytes for b in (None, 4))
    config = free.replace(max_memory_gb=(whole + half) / 2 / gib)       # batch 4 fits, the whole set does not
    assert plan_memory(net, 2 * C, config).batch_syn == 4
    full = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "full", progress=False)
    distill(split.x_train, split.y_train, traj, config.replace(iterations=4), out_dir=tmp_path / "cut",
            progress=False)
    in_use["bytes"] = 10 * gib if at_resume == "more" else gib // 2
    if at_resume == "more":            # a fresh plan now would refuse the run
        with pytest.raises(ResourceError):
            plan_memory(net, 2 * C, config)
    else:                              # a fresh plan now would take the whole set per step
        assert plan_memory(net, 2 * C, config).batch_syn is None
    _, plan = preflight(split.x_train, split.y_train, traj, config, resume_from=tmp_path / "cut" / CHECKPOINT_NAME)
    assert (plan.unroll, plan.batch_syn) == ("reverse", 4)
    resumed = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "cut", resume=True,
                      progress=False)
    _same(resumed, full)
    assert [s["batch_syn"] for s in resumed.history["sessions"]] == [4, 4]
    # other settings on resume are planned afresh (and refused when the batch would change)
    with pytest.raises((ResourceError, FileFormatError)):
        distill(split.x_train, split.y_train, traj, config.replace(max_memory_gb=config.max_memory_gb * 2),
                out_dir=tmp_path / "cut", resume=True, progress=False)


def test_distilled_set_beats_random_real(hard_setup):
    """Tiny separable problem, 1 clip per class: the distilled set trains better nets than a random real one."""
    split, traj = hard_setup
    config = DistillConfig(cpc=1, syn_steps=8, expert_epochs=2, max_start_epoch=3, iterations=40, lr_data=10.0,
                           lr_alpha=1e-4, compile=False, eval_every=0)
    result = distill(split.x_train, split.y_train, traj, config, progress=False)
    loss = result.history["loss"]
    assert np.mean(loss[-5:]) < 0.7 * np.mean(loss[:5])
    ev = EvalConfig(num_nets=3, epochs=40, batch_size=16)
    distilled = evaluate_training_set(result.features, result.labels, split.x_test, split.y_test, MODEL, ev,
                                      lr=result.alpha)["mean"]
    xr, yr = random_real_subset(split.x_train, split.y_train, 1, seed=0)
    random = evaluate_training_set(xr, yr, split.x_test, split.y_test, MODEL, ev)["mean"]
    assert distilled > random + 0.1, (distilled, random)


def test_naive_and_reverse_runs_agree(setup):
    split, traj = setup
    config = BASE.replace(iterations=3)
    a = distill(split.x_train.double(), split.y_train, traj, config.replace(unroll="naive"), progress=False)
    b = distill(split.x_train.double(), split.y_train, traj, config.replace(unroll="reverse"), progress=False)
    torch.testing.assert_close(a.features, b.features, rtol=1e-9, atol=1e-9)
    assert abs(a.alpha - b.alpha) < 1e-12


def test_compile_fallback_is_reported(setup, monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise compile_failure("inductor is broken here")
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    split, traj = setup
    result = distill(split.x_train, split.y_train, traj, BASE.replace(iterations=2, compile=True), progress=False)
    session = result.history["sessions"][0]
    assert session["compile_requested"] and not session["compiled"]
    assert "inductor is broken here" in session["compile_error"]


def test_bad_configs_and_divergence(setup):
    split, traj = setup
    with pytest.raises(ParameterError, match="max_start_epoch"):
        distill(split.x_train, split.y_train, traj, BASE.replace(max_start_epoch=4), progress=False)
    with pytest.raises(ParameterError, match="cpc=100"):
        distill(split.x_train, split.y_train, traj, BASE.replace(cpc=100), progress=False)
    with pytest.raises(ParameterError, match="unroll"):
        distill(split.x_train, split.y_train, traj, BASE.replace(unroll="sideways"), progress=False)
    with pytest.raises(DistillationDiverged, match="lr_data"):
        distill(split.x_train, split.y_train, traj, BASE.replace(lr_data=1e30, iterations=5), progress=False)


def test_distilled_file(setup, tmp_path):
    split, traj = setup
    result = distill(split.x_train, split.y_train, traj, BASE.replace(iterations=1), progress=False)
    result.save(tmp_path / "distilled.pt", traj.feature_config, traj.expert_config)
    obj = torch.load(tmp_path / "distilled.pt", weights_only=True)
    assert obj["kind"] == "distilled" and obj["features"].shape == (2 * C, *SHAPE)
    assert obj["labels"].dtype == torch.int64 and obj["labels"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert float(obj["alpha"]) == result.alpha and obj["history"]["loss"] == result.history["loss"]
    assert obj["config"]["features"] == FeatureConfig().to_dict() and obj["config"]["num_classes"] == C
    assert obj["config"]["distill"]["cpc"] == 2 and obj["config"]["expert"]["model"]["width"] == 4


def test_cli(tmp_path, capsys, monkeypatch):
    data, experts, out = tmp_path / "data", tmp_path / "experts", tmp_path / "out"
    tone_dataset(data, per_class=10, seconds=0.5)
    assert main(["experts", "--data", str(data), "--out", str(experts), "--num-experts", "1", "--epochs", "3",
                 "--width", "4", "--no-compile"]) == 0

    def distill_args(folder):
        return ["distill", "--data", str(data), "--experts", str(experts), "--cpc", "1", "--out", str(folder),
                "--iterations", "2", "--syn-steps", "2", "--no-compile", "--quiet", "--eval-every", "0"]

    args = distill_args(out)
    assert main(args) == 0
    assert "distilled 3 clips" in capsys.readouterr().out
    obj = torch.load(out / "distilled.pt", weights_only=True)
    assert obj["features"].shape == (3, 3, 20, 101) and obj["labels"].tolist() == [0, 1, 2]
    assert obj["config"]["features"] == FeatureConfig().to_dict() and obj["config"]["class_names"] == ["c0", "c1", "c2"]
    norm = load_trajectories(experts).norm                      # the experts' standardisation travels along
    assert obj["config"]["standardized"] and torch.equal(obj["norm_mean"], norm.mean)
    assert obj["features"].abs().max() < 20                     # standardised units, not dB
    assert json.loads((out / "distill.json").read_text())["distill"]["max_start_epoch"] == 1   # clamped to 3 - 2
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(args + ["--overwrite", "--iterations", "3"]) == 0
    assert len(torch.load(out / "distilled.pt", weights_only=True)["history"]["loss"]) == 3
    assert main(args + ["--overwrite", "--max-memory", "0.0001"]) == 2
    assert "max_memory_gb" in capsys.readouterr().err
    assert (out / "distilled.pt").is_file()                    # refused before --overwrite deleted anything
    assert main(distill_args(tmp_path / "soft") + ["--iterations", "1", "--labels", "soft"]) == 0
    soft = torch.load(tmp_path / "soft" / "distilled.pt", weights_only=True)
    assert soft["soft_labels"].shape == (3, 3) and soft["config"]["distill"]["labels"] == "soft"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep")
    assert main(distill_args(foreign) + ["--overwrite"]) == 2
    assert (foreign / "keep.txt").read_text() == "keep"
    # --resume with the same --max-memory keeps the checkpoint's memory plan, whatever is in use now
    import ddfad_fast.train.memory as memory_mod
    in_use = {"bytes": 2 ** 30}
    monkeypatch.setattr(memory_mod, "_process_bytes", lambda device: in_use["bytes"])
    planned = distill_args(tmp_path / "planned") + ["--max-memory", "1.5"]
    assert main(planned + ["--iterations", "1"]) == 0
    in_use["bytes"] = 10 * 2 ** 30
    assert main(planned + ["--resume"]) == 0, capsys.readouterr().err
    assert len(torch.load(tmp_path / "planned" / "distilled.pt", weights_only=True)["history"]["loss"]) == 2


def test_learned_step_size_stays_positive(setup):
    """A step on alpha that would make it negative stops at 1 % of alpha_init (a negative lr is no lr)."""
    split, traj = setup
    result = distill(split.x_train, split.y_train, traj, BASE.replace(lr_alpha=0.01, iterations=3), progress=False)
    assert result.history["alpha"][1] > 5 * BASE.alpha_init          # overshot, then pushed below zero ...
    assert result.history["alpha"][2] == pytest.approx(0.01 * BASE.alpha_init)   # ... and held at the floor
    assert result.alpha >= 0.01 * BASE.alpha_init * (1 - 1e-6)        # (float32)


def test_resumes_checkpoints_of_earlier_releases_and_other_thread_counts(setup, tmp_path):
    """The data fingerprint is a byte hash (a float sum changes with the thread count); a checkpoint holding
    the earlier [N, sum, sum of squares, sum y] form resumes when it matches up to summation order, and the
    expert's compile setting (rounding only) is not part of a checkpoint's identity."""
    split, traj = setup
    config = BASE.replace(iterations=2)
    distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["config"]["data"], str) and "compile" not in raw["config"]["expert"]
    x64 = split.x_train.double()
    legacy = [float(len(split.y_train)), float(x64.sum()) * (1 + 1e-14), float((x64 * x64).sum()),
              float(split.y_train.sum())]
    raw["config"]["data"] = legacy
    torch.save(raw, path)
    traj_compiled = dataclasses.replace(traj, expert_config=traj.expert_config.replace(compile=True))
    resumed = distill(split.x_train, split.y_train, traj_compiled, config.replace(iterations=3), out_dir=tmp_path,
                      resume=True, progress=False)
    assert len(resumed.history["loss"]) == 3
    raw = torch.load(path, weights_only=True)
    raw["config"]["data"] = [legacy[0], legacy[1] + 1.0, legacy[2], legacy[3]]
    torch.save(raw, path)
    with pytest.raises(FileFormatError, match="data"):
        distill(split.x_train, split.y_train, traj, config.replace(iterations=4), out_dir=tmp_path, resume=True,
                progress=False)
