"""Evaluation protocol: learns separable data, seeded, lr choice, random real subsets."""
import pytest
import torch

from ddfad_fast.config import Augment, EvalConfig, ModelConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.train.evaluate import evaluate_training_set, random_real_subset
from ddfad_fast.train.models import build_model
from helpers import make_split

MODEL = ModelConfig(width=4, depth=2)
CFG = EvalConfig(num_nets=2, epochs=30, batch_size=16)


def test_learns_and_is_seeded():
    s = make_split()
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG)
    assert set(r) == {"accs", "mean", "std", "model", "lr", "epochs", "test_correct"} and len(r["accs"]) == 2
    assert r["mean"] >= 0.9 and r["lr"] == 0.01 and r["model"] == "convnet"
    again = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG)
    assert again["accs"] == r["accs"]


def test_untrainable_labels_stay_near_chance():
    """Labels independent of the inputs: the test accuracy stays near chance (1/4)."""
    s = make_split()
    shuffled = s.y_train[torch.randperm(len(s.y_train), generator=torch.Generator().manual_seed(0))]
    r = evaluate_training_set(s.x_train, shuffled, s.x_test, s.y_test, MODEL, CFG.replace(num_nets=1))
    assert r["mean"] <= 0.6


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_other_architectures(name):
    s = make_split()
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, ModelConfig(name=name, width=4, depth=2),
                              CFG.replace(num_nets=1), lr=0.02)
    assert r["model"] == name and r["lr"] == 0.02 and r["std"] == 0.0
    assert r["mean"] >= 0.9                  # a separable 4-class toy set: far above chance (0.25)


def test_lr_precedence_and_errors():
    s = make_split()
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG.replace(num_nets=1, epochs=1, lr=0.05))
    assert r["lr"] == 0.05
    with pytest.raises(ParameterError, match="lr"):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG, lr=-1.0)


def test_random_real_subset():
    s = make_split()
    x, y = random_real_subset(s.x_train, s.y_train, 3, seed=1)
    assert x.shape == (12, *s.x_train.shape[1:]) and torch.bincount(y).tolist() == [3, 3, 3, 3]
    x2, _ = random_real_subset(s.x_train, s.y_train, 3, seed=1)
    x3, _ = random_real_subset(s.x_train, s.y_train, 3, seed=2)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    with pytest.raises(ParameterError, match="fewer than per_class"):
        random_real_subset(s.x_train, s.y_train, 100)


def test_checkpoint_resume_is_exact(tmp_path, interrupt_epoch):
    """Interrupted (Ctrl-C in the middle of an epoch) and resumed == uninterrupted."""
    s = make_split()
    cfg = CFG.replace(num_nets=2, epochs=7)
    want = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg)
    ckpt = tmp_path / "eval.pt"
    for stop_at in (2, 3, 6):                  # before the first checkpoint, just after one, later
        restore = interrupt_epoch(stop_at)
        with pytest.raises(KeyboardInterrupt):
            evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=ckpt,
                                  checkpoint_every=2)
        assert ckpt.is_file()
        restore()
        got = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=ckpt,
                                    checkpoint_every=2)
        assert got == want and not ckpt.exists()


def test_resumes_an_earlier_releases_one_by_one_checkpoint(tmp_path):
    """A state that holds net 0 part-way (the one-by-one format of earlier releases) resumes exactly: net 1
    catches up alone, then both go on side by side."""
    from ddfad_fast.train.evaluate import data_fingerprint
    from ddfad_fast.train.sgd import sgd_epoch
    from ddfad_fast.io import save_artifact
    s = make_split()
    cfg = CFG.replace(num_nets=2, epochs=6)
    want = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg)
    net = build_model(MODEL, tuple(s.x_train.shape[1:]), 4)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = net.init_params(gen)
    velocity = torch.zeros_like(params)
    for _ in range(2):
        sgd_epoch(net, params, velocity, s.x_train, s.y_train, 0.01, cfg.momentum, cfg.weight_decay, cfg.batch_size,
                  gen, cfg.augment)
    old_identity = {"eval": dict(cfg.to_dict(), compile=None), "model": MODEL.to_dict(), "lr": 0.01,
                    "data": data_fingerprint(s.x_train, s.y_train, s.x_test, s.y_test)}
    ckpt = tmp_path / "eval.pt"
    save_artifact(ckpt, "eval_progress", {"accs": [], "val_accs": [], "epoch": 2, "params": params,
                                          "velocity": velocity, "generator": gen.get_state()}, config=old_identity)
    assert evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, lr=0.01, checkpoint=ckpt) == want


def test_checkpoint_of_other_data_is_refused(tmp_path, monkeypatch):
    from ddfad_fast.errors import FileFormatError
    from ddfad_fast.io import save_artifact
    s = make_split()
    ckpt = tmp_path / "eval.pt"
    save_artifact(ckpt, "eval_progress", {"accs": [], "epoch": 0}, config={"data": "something else"})
    with pytest.raises(FileFormatError, match="different config"):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG, checkpoint=ckpt)


def test_steps_set_the_epochs_and_validation_is_reported():
    s = make_split()
    cfg = CFG.replace(steps=6, batch_size=16, num_nets=1)
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, x_val=s.x_test, y_val=s.y_test)
    assert r["epochs"] == 2 == cfg.epochs_for(len(s.y_train))        # 48 clips, batches of 16: 3 steps an epoch
    assert r["val_accs"] == r["accs"] and r["val_mean"] == r["mean"]  # the same clips: the same accuracy
    assert CFG.replace(steps=300, batch_size=128).epochs_for(500) == 75 and CFG.epochs_for(500) == CFG.epochs
    with pytest.raises(ParameterError, match="steps"):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG.replace(steps=0))


@pytest.mark.parametrize("soft", [False, True])
def test_nets_side_by_side_match_nets_trained_alone(soft):
    """R nets through one sgd_epoch call == each alone with its own generator: bit-identical when their steps
    run in turn, within float32 rounding as one batched (vmap) computation."""
    from ddfad_fast.train.sgd import sgd_epoch
    s = make_split()
    net = build_model(MODEL, tuple(s.x_train.shape[1:]), 4)
    y = torch.randn(len(s.y_train), 4) if soft else s.y_train
    aug = Augment(max_shift=2, time_mask=2, freq_mask=1)
    init = torch.stack([net.init_params(torch.Generator().manual_seed(i)) for i in range(3)])
    runs = {}
    for together in (False, True):
        params, velocity = init.clone(), torch.zeros_like(init)
        gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
        losses = [sgd_epoch(net, params, velocity, s.x_train, y, 0.05, 0.9, 5e-4, 20, gens, aug, together=together)
                  for _ in range(2)]
        runs[together] = params, torch.stack(losses)
    for r in range(3):
        p, v, g = init[r].clone(), torch.zeros(net.num_params), torch.Generator().manual_seed(10 + r)
        alone = [sgd_epoch(net, p, v, s.x_train, y, 0.05, 0.9, 5e-4, 20, g, aug) for _ in range(2)]
        assert not torch.allclose(p, init[r])
        assert torch.equal(runs[False][0][r], p) and runs[False][1][:, r].tolist() == alone
        torch.testing.assert_close(runs[True][0][r], p, rtol=1e-5, atol=1e-5 * float(p.abs().max()))
        torch.testing.assert_close(runs[True][1][:, r], torch.tensor(alone, dtype=torch.float64), rtol=1e-5, atol=0)
    with pytest.raises(ParameterError, match="generator"):
        sgd_epoch(net, init.clone(), torch.zeros_like(init), s.x_train, y, 0.05, 0.9, 5e-4, 20, gens[:2], aug)


def test_ensemble_evaluation_agrees_and_resumes_exactly(tmp_path, interrupt_epoch):
    import shutil
    s = make_split()
    cfg = CFG.replace(num_nets=3, epochs=5, augment=Augment(max_shift=2, time_mask=2, freq_mask=1))
    alone = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg)
    together = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True))
    assert together["accs"] == alone["accs"] and together["epochs"] == alone["epochs"]
    ckpt = tmp_path / "eval.pt"
    restore = interrupt_epoch(4)
    with pytest.raises(KeyboardInterrupt):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True),
                              checkpoint=ckpt, checkpoint_every=2)
    restore()
    other = tmp_path / "other.pt"
    shutil.copy(ckpt, other)
    resumed = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True),
                                    checkpoint=ckpt, checkpoint_every=2)
    assert resumed == together and not ckpt.exists()
    # the other setting resumes the same state (float32 rounding apart: at most a test clip per net)
    switched = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=other)
    assert max(abs(a - b) for a, b in zip(switched["accs"], together["accs"])) <= 1 / len(s.y_test) + 1e-12
