"""Evaluation protocol: learns separable data, seeded, lr choice, random real subsets."""
import pytest
import torch

from ddfad_fast.config import Augment, EvalConfig, ModelConfig
from ddfad_fast.errors import FileFormatError, ParameterError
from ddfad_fast.evaluate import evaluate_training_set, random_real_subset
from ddfad_fast.models import build_model
from test_experts import make_split

MODEL = ModelConfig(width=4, depth=2)
CFG = EvalConfig(num_nets=2, epochs=30, batch_size=16)


def test_learns_and_is_seeded():
    s = make_split()
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG)
    assert set(r) == {"accs", "mean", "std", "model", "lr", "epochs"} and len(r["accs"]) == 2
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
    assert r["model"] == name and r["lr"] == 0.02 and 0.0 <= r["mean"] <= 1.0 and r["std"] == 0.0


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


def test_checkpoint_resume_is_exact(tmp_path, monkeypatch):
    """Interrupted (Ctrl-C in the middle of an epoch) and resumed == uninterrupted."""
    import ddfad_fast.evaluate as evaluate
    s = make_split()
    cfg = CFG.replace(num_nets=2, epochs=7)
    want = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg)
    ckpt = tmp_path / "eval.pt"
    real = evaluate.sgd_epoch
    for stop_at in (3, 10):                   # inside net 0, inside net 1
        calls = {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at:
                args[1].add_(1.0)              # half-updated parameters must not be saved
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluate, "sgd_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=ckpt,
                                  checkpoint_every=2)
        assert ckpt.is_file()
        monkeypatch.setattr(evaluate, "sgd_epoch", real)
        got = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=ckpt,
                                    checkpoint_every=2)
        assert got == want and not ckpt.exists()


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
    r = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, x_val=s.x_test[:8],
                              y_val=s.y_test[:8])
    assert r["epochs"] == 2 == cfg.epochs_for(len(s.y_train))        # 48 clips, batches of 16: 3 steps an epoch
    assert len(r["val_accs"]) == 1 and 0 <= r["val_mean"] <= 1
    assert CFG.replace(steps=300, batch_size=128).epochs_for(500) == 75 and CFG.epochs_for(500) == CFG.epochs
    with pytest.raises(ParameterError, match="steps"):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, CFG.replace(steps=0))


@pytest.mark.parametrize("soft", [False, True])
def test_ensemble_epoch_matches_nets_trained_alone(soft):
    """R nets through sgd_epoch_ensemble == each through sgd_epoch with its own generator (float32 rounding)."""
    from ddfad_fast.experts import sgd_epoch, sgd_epoch_ensemble
    s = make_split()
    net = build_model(MODEL, tuple(s.x_train.shape[1:]), 4)
    y = torch.randn(len(s.y_train), 4) if soft else s.y_train
    aug = Augment(max_shift=2, time_mask=2, freq_mask=1)
    init = torch.stack([net.init_params(torch.Generator().manual_seed(i)) for i in range(3)])
    params, velocity = init.clone(), torch.zeros_like(init)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    losses = [sgd_epoch_ensemble(net, params, velocity, s.x_train, y, 0.05, 0.9, 5e-4, 20, gens, aug)
              for _ in range(2)]
    for r in range(3):
        p, v, g = init[r].clone(), torch.zeros(net.num_params), torch.Generator().manual_seed(10 + r)
        alone = [sgd_epoch(net, p, v, s.x_train, y, 0.05, 0.9, 5e-4, 20, g, aug) for _ in range(2)]
        torch.testing.assert_close(params[r], p, rtol=1e-5, atol=1e-5 * float(p.abs().max()))
        assert not torch.allclose(p, init[r])
        torch.testing.assert_close(torch.stack(losses)[:, r], torch.tensor(alone, dtype=torch.float64), rtol=1e-5, atol=0)
    with pytest.raises(ParameterError, match="generators"):
        sgd_epoch_ensemble(net, params, velocity, s.x_train, y, 0.05, 0.9, 5e-4, 20, gens[:2], aug)


def test_ensemble_evaluation_agrees_and_resumes_exactly(tmp_path, monkeypatch):
    import ddfad_fast.evaluate as evaluate
    s = make_split()
    cfg = CFG.replace(num_nets=3, epochs=5, augment=Augment(max_shift=2, time_mask=2, freq_mask=1))
    alone = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg)
    together = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True))
    assert together["accs"] == alone["accs"] and together["epochs"] == alone["epochs"]
    ckpt, real, calls = tmp_path / "eval.pt", evaluate.sgd_epoch_ensemble, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            args[1].add_(1.0)                  # half-updated parameters must not be saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "sgd_epoch_ensemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True),
                              checkpoint=ckpt, checkpoint_every=2)
    monkeypatch.setattr(evaluate, "sgd_epoch_ensemble", real)
    with pytest.raises(FileFormatError, match="different config"):      # an ensemble state is not a one-by-one one
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg, checkpoint=ckpt)
    resumed = evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, MODEL, cfg.replace(ensemble=True),
                                    checkpoint=ckpt, checkpoint_every=2)
    assert resumed == together and not ckpt.exists()
