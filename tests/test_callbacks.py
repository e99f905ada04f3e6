"""Callbacks of the training loops and the TensorBoard callback: the calls a logger receives, event files read
back, bit-identical results with and without callbacks, and the one-line error without tensorboard."""
import json
import sys

import pytest
import torch

from helpers import EXPERT_CONFIG, make_split, tone_dataset
from ddfad_fast.cli import main
from ddfad_fast.config import Augment, DistillConfig, EvalConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.train.callbacks import Callback, CallbackList, as_callbacks, feature_grid
from ddfad_fast.train.distill import distill
from ddfad_fast.train.evaluate import evaluate_training_set
from ddfad_fast.train.experts import load_trajectories, train_experts

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = DistillConfig(cpc=2, syn_steps=3, expert_epochs=1, max_start_epoch=1, iterations=4, lr_data=10.0,
                       lr_alpha=1e-3, batch_syn=4, augment=Augment(max_shift=2, time_mask=3, freq_mask=1),
                       compile=False, checkpoint_every=2, eval_every=2)
EVAL = EvalConfig(num_nets=2, epochs=3, batch_size=16, compile=False)


class Recorder(Callback):
    """Every call, in order, as (hook, *arguments)."""

    def __init__(self):
        self.calls = []

    def on_stage_begin(self, stage, info):
        self.calls.append(("begin", stage, dict(info)))

    def on_expert_epoch(self, expert, epoch, metrics):
        self.calls.append(("expert", expert, epoch, dict(metrics)))

    def on_distill_iteration(self, iteration, metrics):
        self.calls.append(("iteration", iteration, dict(metrics)))

    def on_distilled_set(self, iteration, features, labels):
        features.add_(1.0)               # copies: scribbling on them must change nothing
        self.calls.append(("set", iteration, features.shape, labels.clone()))

    def on_evaluation_epoch(self, net, epoch, metrics):
        self.calls.append(("eval_epoch", net, epoch, dict(metrics)))

    def on_evaluation(self, metrics):
        self.calls.append(("evaluation", dict(metrics)))

    def on_stage_end(self, stage, info):
        self.calls.append(("end", stage, dict(info)))

    def close(self):
        self.calls.append(("close",))

    def of(self, hook):
        return [c for c in self.calls if c[0] == hook]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    split = make_split()
    folder = tmp_path_factory.mktemp("experts")
    train_experts(split, EXPERT_CONFIG, folder, progress=False)
    return split, load_trajectories(folder)


def _monitor(split):
    def evaluate(xs, ys, lr):
        return evaluate_training_set(xs, ys, split.x_test, split.y_test, EXPERT_CONFIG.model, EVAL.replace(num_nets=1),
                                     lr=lr)
    return evaluate


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_callbacks_change_no_result(setup, tmp_path):
    """Experts, distillation (soft labels, an evaluation every 2 iterations) and evaluation give bit-identical
    tensors with a TensorBoard callback (images and clips every iteration) and a recorder as without them."""
    pytest.importorskip("tensorboard")
    from ddfad_fast.train.callbacks import TensorBoardCallback
    split, traj = setup
    tb = TensorBoardCallback(tmp_path / "tb", every=1)
    hooks = [tb, Recorder()]
    for name, cbs in (("plain", None), ("logged", hooks)):
        train_experts(split, EXPERT_CONFIG, tmp_path / name, progress=False, callbacks=cbs)
    plain, logged = load_trajectories(tmp_path / "plain"), load_trajectories(tmp_path / "logged")
    assert all(torch.equal(a, b) for a, b in zip(plain.params, logged.params))
    config = CONFIG.replace(labels="soft")
    a = distill(split.x_train, split.y_train, traj, config, evaluate_fn=_monitor(split), progress=False)
    b = distill(split.x_train, split.y_train, traj, config, evaluate_fn=_monitor(split), progress=False,
                callbacks=hooks)
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels) and a.alpha == b.alpha
    assert torch.equal(a.soft_labels, b.soft_labels) and a.history["loss"] == b.history["loss"]
    r1 = evaluate_training_set(a.features, a.labels, split.x_test, split.y_test, EXPERT_CONFIG.model, EVAL, lr=a.alpha)
    r2 = evaluate_training_set(a.features, a.labels, split.x_test, split.y_test, EXPERT_CONFIG.model, EVAL, lr=a.alpha,
                               callbacks=hooks)
    assert r1["accs"] == r2["accs"]
    tb.close()
    assert len(_events(tmp_path / "tb").Images("distill/cpc2/features")) == 4      # one per iteration


def test_a_custom_callback_receives_the_calls(setup, tmp_path):
    split, traj = setup
    rec = Recorder()
    train_experts(split, EXPERT_CONFIG, tmp_path / "experts", progress=False, callbacks=rec)
    begin, *_ = rec.calls
    assert begin == ("begin", "experts", {"scope": "", "num_experts": 2, "epochs": 3})
    epochs = rec.of("expert")
    assert [(c[1], c[2]) for c in epochs] == [(k, e) for k in range(2) for e in range(1, 4)]
    saved = torch.load(tmp_path / "experts" / "expert_001.pt", weights_only=True)
    assert [c[3]["train_loss"] for c in epochs[3:]] == saved["train_loss"]       # no validation split: test
    assert [c[3]["test_accuracy"] for c in epochs[3:]] == saved["monitor_acc"]
    assert rec.calls[-1] == ("end", "experts", {"scope": ""})

    rec = Recorder()
    result = distill(split.x_train, split.y_train, traj, CONFIG, evaluate_fn=_monitor(split), progress=False,
                     callbacks=CallbackList([rec]).scoped("ablation/ch1"))
    assert rec.calls[0][:2] == ("begin", "distill")
    info = rec.calls[0][2]
    assert info["scope"] == "ablation/ch1/cpc2" and info["iterations"] == 4 and info["start_iteration"] == 0
    assert info["feature_config"] == traj.feature_config and info["norm"] is traj.norm
    iterations = rec.of("iteration")
    assert [c[1] for c in iterations] == [1, 2, 3, 4]
    assert [c[2]["loss"] for c in iterations] == result.history["loss"]
    assert [c[2]["seconds"] for c in iterations] == result.history["seconds"]
    assert [c[2]["alpha"] for c in iterations[:-1]] == result.history["alpha"][1:]   # history: before the update
    assert iterations[-1][2]["alpha"] == result.alpha
    assert [("val_accuracy" in c[2]) for c in iterations] == [False, True, False, True]
    assert [c[2]["val_accuracy"] for c in iterations if "val_accuracy" in c[2]] == [
        e["mean"] for e in result.history["eval"]]
    sets = rec.of("set")
    assert [c[1] for c in sets] == [1, 2, 3, 4] and all(c[2] == result.features.shape for c in sets)
    assert torch.equal(sets[-1][3], result.labels)
    assert rec.calls[-1] == ("end", "distill", {"scope": "ablation/ch1/cpc2", "iteration": 4, "alpha": result.alpha})

    rec = Recorder()
    r = evaluate_training_set(result.features, result.labels, split.x_test, split.y_test, EXPERT_CONFIG.model, EVAL,
                              lr=result.alpha, x_val=split.x_test[:8], y_val=split.y_test[:8],
                              callbacks=as_callbacks(rec).scoped("cpc2/distilled"))
    assert rec.calls[0] == ("begin", "evaluate", {"scope": "cpc2/distilled/convnet", "model": "convnet",
                                                  "num_nets": 2, "epochs": 3, "lr": result.alpha})
    assert sorted((c[1], c[2]) for c in rec.of("eval_epoch")) == [(n, e) for n in range(2) for e in range(1, 4)]
    assert all(c[3]["train_loss"] > 0 for c in rec.of("eval_epoch"))
    (final,) = rec.of("evaluation")
    assert final[1] == {"test_accuracy": r["mean"], "test_accuracy_std": r["std"], "val_accuracy": r["val_mean"],
                        "val_accuracy_std": r["val_std"], "epochs": 3, "lr": result.alpha}
    assert rec.calls[-1][:2] == ("end", "evaluate") and not rec.of("close")


def test_a_resumed_distillation_reports_the_iterations_it_runs(setup, tmp_path):
    split, traj = setup
    distill(split.x_train, split.y_train, traj, CONFIG.replace(iterations=2, eval_every=0), out_dir=tmp_path,
            progress=False)
    rec = Recorder()
    distill(split.x_train, split.y_train, traj, CONFIG.replace(eval_every=0), out_dir=tmp_path, resume=True,
            progress=False, callbacks=rec)
    assert rec.calls[0][2]["start_iteration"] == 2 and [c[1] for c in rec.of("iteration")] == [3, 4]


def test_bad_callbacks_are_refused():
    for bad in ("tb", 3, [object()]):
        with pytest.raises(ParameterError, match="Callback"):
            as_callbacks(bad)
    assert not as_callbacks(None) and len(as_callbacks([Callback(), Callback()])) == 2


def test_feature_grid_places_every_clip():
    """Rows are classes, columns clips; each channel scaled by its range over the set, high coefficients on top."""
    x = torch.randn(5, 3, 4, 6, dtype=torch.float64)
    labels = torch.tensor([1, 0, 1, 1, 0])
    grid = feature_grid(x, labels, max_per_class=2)
    assert grid.shape == (1, 2 * (3 * 5) - 1, 2 * 7 - 1) and grid.dtype == torch.float32
    assert float(grid.min()) >= 0 and float(grid.max()) <= 1
    for row, members in enumerate(([1, 4], [0, 2])):      # class 0: clips 1, 4; class 1: clips 0, 2 (3 left out)
        for col, i in enumerate(members):
            for ch in range(3):
                lo, hi = x[:, ch].min(), x[:, ch].max()
                want = ((x[i, ch] - lo) / (hi - lo)).flip(0).float()
                top, left = row * 15 + ch * 5, col * 7
                torch.testing.assert_close(grid[0, top:top + 4, left:left + 6], want)
    with pytest.raises(ParameterError):
        feature_grid(x, labels[:3])


def test_run_writes_tensorboard_events(tmp_path):
    """`ddfad run --tensorboard`: the scalars of every stage, the feature grid and clips every K iterations and at
    the last; the loss scalars are the run's history."""
    pytest.importorskip("tensorboard")
    tone_dataset(tmp_path / "data")
    tb = tmp_path / "tb"
    assert main(["run", "--data", str(tmp_path / "data"), "--cpc", "2", "--out", str(tmp_path / "run"), "--width", "4",
                 "--num-experts", "1", "--expert-epochs", "3", "--iterations", "3", "--syn-steps", "2", "--no-compile",
                 "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1", "--no-audio", "--threads", "1",
                 "--tensorboard", str(tb), "--tensorboard-every", "2"]) == 0
    events = _events(tb)
    tags = events.Tags()
    for tag in ("experts/expert_000/train_loss", "experts/expert_000/val_accuracy", "distill/cpc2/loss",
                "distill/cpc2/alpha", "distill/cpc2/seconds", "evaluate/cpc2/distilled/convnet/net0/train_loss",
                "evaluate/cpc2/distilled/convnet/test_accuracy", "evaluate/cpc2/random/convnet/test_accuracy",
                "evaluate/full/convnet/test_accuracy"):
        assert tag in tags["scalars"], tag
    history = json.loads((tmp_path / "run" / "cpc2" / "history.json").read_text())
    loss = events.Scalars("distill/cpc2/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx(history["loss"], rel=1e-6)
    assert [e.step for e in events.Scalars("experts/expert_000/train_loss")] == [1, 2, 3]
    assert tags["images"] == ["distill/cpc2/features"]
    assert [e.step for e in events.Images("distill/cpc2/features")] == [2, 3]       # every 2 and the last
    assert sorted(tags["audio"]) == [f"distill/cpc2/audio/class_{c}" for c in range(3)]
    clip = events.Audio("distill/cpc2/audio/class_0")
    assert [e.step for e in clip] == [2, 3] and clip[0].sample_rate == 8000 and clip[0].length_frames == 8000


def test_missing_tensorboard_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)        # import tensorboard raises ImportError
    from ddfad_fast.train.callbacks import TensorBoardCallback
    with pytest.raises(ParameterError, match=r'pip install "ddfad_fast\[tb\]"'):
        TensorBoardCallback(tmp_path / "tb")
    import ddfad_fast as dd
    with pytest.raises(ParameterError, match="tensorboard"):
        dd.distill_dataset(tmp_path / "nowhere", out=tmp_path / "run", log_dir=tmp_path / "tb", progress=False)
    for command in (["experts", "--out", str(tmp_path / "e")], ["evaluate", "--full"],
                    ["distill", "--experts", str(tmp_path), "--cpc", "1", "--out", str(tmp_path / "d")],
                    ["run", "--cpc", "1", "--out", str(tmp_path / "r")]):
        code = main([*command, "--data", str(tmp_path / "nowhere"), "--tensorboard", str(tmp_path / "tb")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "tensorboard" in err[0] and "pip install" in err[0], (command, err)
