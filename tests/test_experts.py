"""Expert training: snapshots, seeding, exact resume, SGD vs torch.optim.SGD, trajectory files."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ddfad_fast.train.sgd as sgd
from helpers import C, EXPERT_CONFIG, SHAPE, make_split
from ddfad_fast.config import Augment, FeatureConfig
from ddfad_fast.data import carve_validation
from ddfad_fast.errors import FileFormatError, ParameterError
from ddfad_fast.train.experts import load_trajectories, train_experts
from ddfad_fast.train.sgd import sgd_epoch
from ddfad_fast.io import load_artifact, save_artifact
from ddfad_fast.train.models import build_model

CFG = EXPERT_CONFIG


def test_trajectory_files(tmp_path):
    split = make_split()
    paths = train_experts(split, CFG, tmp_path, progress=False)
    assert paths == [tmp_path / "expert_000.pt", tmp_path / "expert_001.pt"]
    obj = load_artifact(paths[1], kind="trajectory")
    net = build_model(CFG.model, SHAPE, C)
    assert obj["params"].shape == (CFG.epochs + 1, net.num_params) and obj["params"].dtype == torch.float32
    assert obj["seed"] == CFG.seed + 1
    torch.testing.assert_close(obj["params"][0], net.init_params(torch.Generator().manual_seed(CFG.seed + 1)))
    assert len(obj["train_loss"]) == len(obj["monitor_acc"]) == CFG.epochs and obj["monitor_split"] == "test"
    assert obj["config"]["in_shape"] == list(SHAPE) and obj["config"]["num_classes"] == C
    assert not list(tmp_path.glob("*.partial.pt"))
    traj = load_trajectories(tmp_path, FeatureConfig())
    assert len(traj.params) == 2 and traj.expert_config == CFG and traj.in_shape == SHAPE and traj.num_classes == C
    assert not torch.equal(traj.params[0], traj.params[1])
    with pytest.raises(FileFormatError, match="different config"):
        load_trajectories(tmp_path, FeatureConfig(n_mfcc=13))


def test_experts_learn(tmp_path):
    split = make_split()
    cfg = CFG.replace(num_experts=1, epochs=8, lr=0.05)
    train_experts(split, cfg, tmp_path, progress=False)
    obj = load_artifact(tmp_path / "expert_000.pt")
    assert obj["monitor_acc"][-1] >= 0.9 and obj["train_loss"][-1] < obj["train_loss"][0]


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 5e-4)])
def test_sgd_epoch_matches_torch_optim(momentum, weight_decay):
    """Our flat-vector SGD step equals torch.optim.SGD on the same batches."""
    split = make_split(1)
    net = build_model(CFG.model, SHAPE, C)
    init = net.init_params(torch.Generator().manual_seed(3), dtype=torch.float64)
    x = split.x_train.double()
    params, velocity = init.clone(), torch.zeros_like(init)
    sgd_epoch(net, params, velocity, x, split.y_train, 0.03, momentum, weight_decay, 16,
              torch.Generator().manual_seed(7))
    ref = init.clone().requires_grad_()
    opt = torch.optim.SGD([ref], lr=0.03, momentum=momentum, weight_decay=weight_decay)
    perm = torch.randperm(len(split.y_train), generator=torch.Generator().manual_seed(7))
    for i in range(0, len(perm), 16):
        idx = perm[i:i + 16]
        opt.zero_grad()
        F.cross_entropy(net.forward(ref, x[idx]), split.y_train[idx]).backward()
        opt.step()
    torch.testing.assert_close(params, ref.detach(), atol=1e-12, rtol=1e-10)


def test_resume_is_exact(tmp_path, interrupt_epoch):
    split = make_split()
    cfg = CFG.replace(num_experts=2, epochs=4, augment=Augment(max_shift=2, time_mask=3, freq_mask=2))
    train_experts(split, cfg, tmp_path / "full", progress=False)

    restore = interrupt_epoch(7)  # expert 1, epoch 3
    with pytest.raises(KeyboardInterrupt):
        train_experts(split, cfg, tmp_path / "resumed", progress=False)
    restore()
    assert (tmp_path / "resumed" / "expert_000.pt").exists()
    assert (tmp_path / "resumed" / "expert_001.partial.pt").exists()
    with pytest.raises(ParameterError, match="expert_000.pt exists"):
        train_experts(split, cfg, tmp_path / "resumed", progress=False)
    train_experts(split, cfg, tmp_path / "resumed", resume=True, progress=False)
    for k in range(2):
        a = load_artifact(tmp_path / "full" / f"expert_{k:03d}.pt")
        b = load_artifact(tmp_path / "resumed" / f"expert_{k:03d}.pt")
        assert torch.equal(a["params"], b["params"]) and a["monitor_acc"] == b["monitor_acc"]
    assert not list((tmp_path / "resumed").glob("*.partial.pt"))


def test_experts_trained_together_match_one_by_one_and_resume_any_mix(tmp_path, interrupt_epoch):
    """ensemble=True trains the unfinished experts as one batched computation: each file within float32
    rounding of training it alone; it resumes a one-by-one run stopped half-way (one expert finished, one
    part-way, one not started: the last catches up alone, then the two go on together)."""
    split = make_split()
    cfg = CFG.replace(num_experts=3, epochs=4, augment=Augment(max_shift=2, time_mask=3, freq_mask=2))
    train_experts(split, cfg, tmp_path / "alone", progress=False)
    train_experts(split, cfg.replace(ensemble=True), tmp_path / "together", progress=False)
    restore = interrupt_epoch(7)  # expert 1, epoch 3
    with pytest.raises(KeyboardInterrupt):
        train_experts(split, cfg, tmp_path / "mixed", progress=False)
    restore()
    assert sorted(p.name for p in (tmp_path / "mixed").glob("expert_*")) == ["expert_000.pt", "expert_001.partial.pt"]
    train_experts(split, cfg.replace(ensemble=True), tmp_path / "mixed", resume=True, progress=False)
    assert not list((tmp_path / "mixed").glob("*.partial.pt"))
    for k in range(3):
        a = load_artifact(tmp_path / "alone" / f"expert_{k:03d}.pt")
        for other in ("together", "mixed"):
            b = load_artifact(tmp_path / other / f"expert_{k:03d}.pt")
            assert b["seed"] == a["seed"] and len(b["train_loss"]) == cfg.epochs
            scale = float(a["params"].abs().max())
            torch.testing.assert_close(b["params"], a["params"], rtol=1e-5, atol=1e-5 * scale)
    assert torch.equal(load_artifact(tmp_path / "mixed" / "expert_000.pt")["params"],
                       load_artifact(tmp_path / "alone" / "expert_000.pt")["params"])     # finished before: kept
    assert load_trajectories(tmp_path / "together").expert_config == cfg.replace(ensemble=True)


def test_resume_refuses_other_config(tmp_path):
    split = make_split()
    train_experts(split, CFG.replace(num_experts=1), tmp_path, progress=False)
    train_experts(split, CFG.replace(num_experts=2), tmp_path, resume=True, progress=False)  # more experts: fine
    assert load_trajectories(tmp_path).expert_config == CFG.replace(num_experts=2)
    with pytest.raises(FileFormatError, match="different expert config"):
        train_experts(split, CFG.replace(num_experts=1, lr=0.02), tmp_path, resume=True, progress=False)


def test_bad_config_and_empty_dir(tmp_path):
    with pytest.raises(ParameterError, match="num_experts"):
        train_experts(make_split(), CFG.replace(num_experts=0), tmp_path, progress=False)
    with pytest.raises(FileFormatError, match="no expert"):
        load_trajectories(Path(tmp_path))


def test_augmented_and_soft_label_epochs():
    """Augmentation draws come from the epoch's generator (same seed, same result; another seed, another);
    one-hot soft-label logits scaled large train like the class labels; the step is a real gradient step."""
    split = make_split(2)
    net = build_model(CFG.model, SHAPE, C)
    aug = Augment(max_shift=3, time_mask=3, freq_mask=2)
    init = net.init_params(torch.Generator().manual_seed(0), dtype=torch.float64)
    x = split.x_train.double()

    def epoch(y, augment, seed):
        params, velocity = init.clone(), torch.zeros_like(init)
        sgd_epoch(net, params, velocity, x, y, 0.05, 0.0, 0.0, 16, torch.Generator().manual_seed(seed), augment)
        return params

    plain, a1, a1_again, a2 = epoch(split.y_train, None, 1), epoch(split.y_train, aug, 1), \
        epoch(split.y_train, aug, 1), epoch(split.y_train, aug, 2)
    assert torch.equal(a1, a1_again) and not torch.equal(a1, a2) and not torch.equal(a1, plain)
    one_hot = F.one_hot(split.y_train, C).double() * 1e4          # softmax = the one-hot target
    torch.testing.assert_close(epoch(one_hot, None, 1), plain, atol=1e-12, rtol=1e-10)


def test_experts_carry_their_standardisation_and_track_validation(tmp_path):
    split = carve_validation(make_split(n_train=80), 0.25)
    std = split.standardized()
    train_experts(std, CFG.replace(num_experts=2), tmp_path, progress=False)
    obj = load_artifact(tmp_path / "expert_000.pt")
    assert obj["monitor_split"] == "val" and obj["config"]["standardized"] is True
    traj = load_trajectories(tmp_path)
    assert torch.equal(traj.norm.mean, std.norm.mean) and torch.equal(traj.norm.std, std.norm.std)
    raw = tmp_path / "raw"
    train_experts(split, CFG.replace(num_experts=1), raw, progress=False)
    assert load_trajectories(raw).norm is None
    other = tmp_path / "other"            # an expert of other standardised data cannot join the set
    train_experts(carve_validation(make_split(5, n_train=80), 0.25).standardized(), CFG.replace(num_experts=2), other,
                  progress=False)
    (other / "expert_001.pt").replace(tmp_path / "expert_001.pt")
    with pytest.raises(FileFormatError, match="standardised differently"):
        load_trajectories(tmp_path)


def _dynamo_works() -> bool:
    try:
        import torch._dynamo  # noqa: F401
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _dynamo_works(), reason="torch.compile (dynamo) unsupported on this platform")
def test_compiled_training_step_matches_eager():
    """Two augmented epochs with the compiled step land where the eager ones do (float32 rounding).
    One batch shape, one compilation (~15 s)."""
    split = make_split()
    net = build_model(CFG.model, SHAPE, C)
    finals, losses = [], []
    for compile_ in (False, True):
        stepper = sgd.training_stepper(net, compile_)
        params, velocity = net.init_params(torch.Generator().manual_seed(0)), torch.zeros(net.num_params)
        gen = torch.Generator().manual_seed(1)
        losses.append([sgd_epoch(net, params, velocity, split.x_train, split.y_train, 0.05, 0.9, 5e-4, 16, gen,
                                 Augment(max_shift=3, time_mask=3, freq_mask=2), stepper) for _ in range(2)])
        if compile_ and not stepper.compiled:
            pytest.fail(f"torch.compile failed on this platform: {stepper.compile_error}")
        finals.append(params)
    assert sgd.training_stepper(net, True) is sgd.training_stepper(build_model(CFG.model, SHAPE, C), True)
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-5, atol=1e-5 * float(finals[0].abs().max()))
    assert not torch.equal(finals[0], net.init_params(torch.Generator().manual_seed(0)))
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=0)


def test_compile_failure_warns_once_and_trains_eager(tmp_path, monkeypatch):
    from ddfad_fast.errors import BackendFallbackWarning

    def broken_compile(fn, **kwargs):
        raise RuntimeError("inductor is broken here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(sgd, "_STEPPERS", {})
    monkeypatch.setattr("ddfad_fast.ops.dispatch._WARNED", set())
    cfg = CFG.replace(num_experts=2, epochs=1, compile=True)
    with pytest.warns(BackendFallbackWarning, match="inductor is broken here") as record:
        train_experts(make_split(), cfg, tmp_path, progress=False)
    assert len([w for w in record if issubclass(w.category, BackendFallbackWarning)]) == 1
    eager = tmp_path / "eager"
    train_experts(make_split(), cfg.replace(compile=False), eager, progress=False)
    assert torch.equal(load_artifact(tmp_path / "expert_001.pt")["params"], load_artifact(eager / "expert_001.pt")["params"])


def test_an_epoch_of_a_small_set_is_several_passes(tmp_path):
    """min_epoch_steps: an epoch of 48 clips in batches of 16 (3 steps a pass) is 3 passes when it must be at
    least 7 steps; its snapshots are every third one of one-pass epochs, bit for bit, and its loss their mean."""
    split = make_split()
    aug = Augment(max_shift=2, time_mask=3, freq_mask=2)
    one_pass = CFG.replace(num_experts=1, epochs=6, augment=aug)
    passes = one_pass.replace(epochs=2, min_epoch_steps=7)
    assert passes.passes_per_epoch(48) == 3 and passes.passes_per_epoch(112) == 1 and one_pass.passes_per_epoch(5) == 1
    train_experts(split, one_pass, tmp_path / "one", progress=False)
    train_experts(split, passes, tmp_path / "three", progress=False)
    a, b = load_artifact(tmp_path / "one" / "expert_000.pt"), load_artifact(tmp_path / "three" / "expert_000.pt")
    assert b["params"].shape[0] == 3 and torch.equal(b["params"], a["params"][::3])
    for e in range(2):
        assert b["train_loss"][e] == pytest.approx(sum(a["train_loss"][3 * e:3 * e + 3]) / 3, rel=1e-12)
    assert b["monitor_acc"] == [a["monitor_acc"][2], a["monitor_acc"][5]]
    assert load_trajectories(tmp_path / "three").expert_config == passes
    with pytest.raises(ParameterError, match="min_epoch_steps"):
        train_experts(split, passes.replace(min_epoch_steps=0), tmp_path / "bad", progress=False)
    with pytest.raises(ParameterError, match="passes per epoch"):
        sgd.train_group(None, None, split.x_train, split.y_train, 1, lambda e: 0.1, 0.0, 0.0, 16, passes=0)


def test_files_from_before_min_epoch_steps_resume(tmp_path):
    """An expert file written before ExpertConfig had min_epoch_steps (its config lacks the field) is the
    same config as min_epoch_steps=None: kept on resume; one made with passes is not."""
    split = make_split()
    cfg = CFG.replace(num_experts=1)
    train_experts(split, cfg, tmp_path, progress=False)
    path = tmp_path / "expert_000.pt"
    obj = load_artifact(path)
    config = obj.pop("config")
    del config["expert"]["min_epoch_steps"]
    payload = {k: v for k, v in obj.items() if k not in ("format", "kind", "version")}
    save_artifact(path, "trajectory", payload, config=config)
    train_experts(split, cfg.replace(num_experts=2), tmp_path, resume=True, progress=False)
    assert torch.equal(load_artifact(path)["params"], obj["params"])
    with pytest.raises(FileFormatError, match="different expert config"):
        train_experts(split, cfg.replace(min_epoch_steps=7), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("preset", ["cpu-small", "cpu-large", "paper"])
def test_presets_keep_one_pass_on_fsdd_and_take_five_on_emodb(preset):
    """The presets' expert epochs: one pass over FSDD's 2,400 training clips and the 100k corpus's 80,903 (the
    committed FSDD and 100k reports stand), five over EmoDB's 387 (7 batches of 64: 35 steps >= 32)."""
    from ddfad_fast.presets import get_preset
    expert = get_preset(preset).expert
    assert expert.passes_per_epoch(2400) == 1 and expert.passes_per_epoch(80903) == 1
    assert expert.passes_per_epoch(387) == 5 and expert.passes_per_epoch(1) == 32
