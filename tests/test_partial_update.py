"""Where the synthetic set starts (DistillConfig.init: random, correct, herding), its soft labels, partial
updates (distill_fraction), the moving average it returns (ema_decay, after FTD) and their flags."""
import pytest
import torch

from helpers import reference_soft_labels, tiny_trajectories
from ddfad_fast.config import DistillConfig
from ddfad_fast.errors import FileFormatError, ParameterError
from ddfad_fast.presets import get_preset
from ddfad_fast.train.distill import distill
from ddfad_fast.train.distill_state import update_mask
from ddfad_fast.train.evaluate import expert_soft_labels, herding_subset
from ddfad_fast.train.models import build_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    return tiny_trajectories(tmp_path_factory.mktemp("experts"), epochs=6)


def _config(**changes) -> DistillConfig:
    return DistillConfig(cpc=4, syn_steps=2, expert_epochs=2, max_start_epoch=3, iterations=5, lr_data=10.0,
                         compile=False, checkpoint_every=0, eval_every=0).replace(**changes)


def test_update_mask_keeps_the_first_clips_of_every_class():
    mask = update_mask(_config(distill_fraction=0.5), 8).flatten()     # 2 classes x 4 clips, class-major
    assert mask.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    # the updated share is rounded up: at least one clip per class moves
    assert update_mask(_config(distill_fraction=0.1), 8).flatten().tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    assert update_mask(_config(distill_fraction=1.0), 8) is None


def test_herding_start_and_partial_update(trajectories):
    split, traj = trajectories
    net = build_model(traj.expert_config.model, traj.in_shape, traj.num_classes)
    coreset, coreset_labels = herding_subset(split.x_train, split.y_train, 4, net, traj.params[0][-1])
    start = distill(split.x_train, split.y_train, traj, _config(init="herding", iterations=0), progress=False)
    assert torch.equal(start.features, coreset) and torch.equal(start.labels, coreset_labels)

    result = distill(split.x_train, split.y_train, traj, _config(init="herding", distill_fraction=0.5), progress=False)
    moved = (result.features - coreset).flatten(1).abs().amax(1) > 0
    # per class (4 clips each): the two first herding picks stay real, bit for bit; the other two are distilled
    assert moved.view(-1, 4).tolist() == [[False, False, True, True]] * traj.num_classes
    full = distill(split.x_train, split.y_train, traj, _config(init="herding"), progress=False)
    assert bool(((full.features - coreset).flatten(1).abs().amax(1) > 0).all())


def test_partial_update_is_part_of_the_checkpoint_identity(trajectories, tmp_path):
    split, traj = trajectories
    distill(split.x_train, split.y_train, traj, _config(distill_fraction=0.5, iterations=2), out_dir=tmp_path,
            progress=False)
    with pytest.raises(FileFormatError):
        distill(split.x_train, split.y_train, traj, _config(distill_fraction=0.25, iterations=4), out_dir=tmp_path,
                resume=True, progress=False)


@pytest.mark.parametrize("changes, match", [({"init": "kmeans"}, "init"), ({"distill_fraction": 0.0}, "distill_fraction"),
                                            ({"distill_fraction": 1.5}, "distill_fraction")])
def test_bad_settings(trajectories, changes, match):
    split, traj = trajectories
    with pytest.raises(ParameterError, match=match):
        distill(split.x_train, split.y_train, traj, _config(**changes), progress=False)


def test_flags():
    from ddfad_fast.cli.entry import build_parser
    from ddfad_fast.cli.run import apply_overrides
    parser = build_parser()
    args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--init", "herding",
                              "--distill-fraction", "0.2"])
    config = apply_overrides(get_preset("cpu-small"), args).distill
    assert (config.init, config.distill_fraction) == ("herding", 0.2)
    args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o"])
    config = apply_overrides(get_preset("cpu-small"), args).distill
    assert (config.init, config.distill_fraction) == ("random", 1.0)
    args = parser.parse_args(["distill", "--data", "d", "--experts", "e", "--cpc", "1", "--out", "o",
                              "--init", "herding", "--distill-fraction", "0.5"])
    assert (args.init, args.distill_fraction) == ("herding", 0.5)


def test_provenance_names_the_code():
    from ddfad_fast.provenance import git_commit, provenance
    record = provenance()
    assert {"git_commit", "date", "load_average_1_5_15", "cpu_count", "python", "torch", "numpy"} <= set(record)
    assert record["torch"] == __import__("torch").__version__ and record["cpu_count"] == __import__("os").cpu_count()
    assert record["git_commit"] == git_commit() and record["git_commit"]
    # outside a git checkout: the environment's value, else "unknown", never another repository's HEAD
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as folder:
        assert git_commit(Path(folder)) in ("unknown", __import__("os").environ.get("DDFAD_GIT_COMMIT"))


def _votes(net, traj, x, y, epoch):
    """How many experts' snapshots ``epoch`` classify each clip correctly (one clip at a time)."""
    return torch.tensor([sum(int(net.forward(p[epoch], x[i:i + 1]).argmax()) == int(y[i]) for p in traj.params)
                         for i in range(len(y))])


def test_correct_start_takes_clips_the_experts_get_right(trajectories):
    split, traj = trajectories
    net = build_model(traj.expert_config.model, traj.in_shape, traj.num_classes)
    epoch = 4                           # an early snapshot: it still gets some training clips wrong
    votes = _votes(net, traj, split.x_train, split.y_train, epoch)
    assert int((votes < len(traj.params)).sum()) >= 4, "the test needs clips some expert gets wrong"
    config = _config(init="correct", label_expert_epoch=epoch, iterations=0)
    start = distill(split.x_train, split.y_train, traj, config, progress=False)
    chosen = torch.tensor([int(torch.nonzero((split.x_train == clip).flatten(1).all(1))[0]) for clip in start.features])
    assert torch.equal(start.labels, torch.arange(traj.num_classes).repeat_interleave(4))
    assert torch.equal(split.y_train[chosen], start.labels)
    for c in range(traj.num_classes):   # no clip left out is right for more experts than one taken
        members = torch.nonzero(split.y_train == c).flatten()
        taken = chosen[start.labels == c]
        left = members[~torch.isin(members, taken)]
        assert int(votes[taken].min()) >= int(votes[left].max())
    # seeded: the same start again, another seed draws other clips among equals
    again = distill(split.x_train, split.y_train, traj, config, progress=False)
    assert torch.equal(again.features, start.features)
    other = distill(split.x_train, split.y_train, traj, config.replace(seed=1), progress=False)
    assert not torch.equal(other.features, start.features)


def test_random_start_is_unchanged(trajectories):
    """init="random" draws, class by class, the first cpc clips of a seeded permutation of the class."""
    split, traj = trajectories
    gen = torch.Generator().manual_seed(7)
    idx = torch.cat([torch.nonzero(split.y_train == c).flatten()[torch.randperm(int((split.y_train == c).sum()),
                                                                              generator=gen)[:4]]
                     for c in range(traj.num_classes)])
    start = distill(split.x_train, split.y_train, traj, _config(seed=7, iterations=0), progress=False)
    assert torch.equal(start.features, split.x_train[idx])


def test_soft_labels_come_from_the_experts_that_are_right(trajectories):
    split, traj = trajectories
    net = build_model(traj.expert_config.model, traj.in_shape, traj.num_classes)
    x, y = split.x_train[:24], split.y_train[:24]
    assert int((_votes(net, traj, x, y, 1) < len(traj.params)).sum()) >= 2
    logits = expert_soft_labels(net, torch.stack([p[1] for p in traj.params]), x, y)
    torch.testing.assert_close(logits, reference_soft_labels(net, traj, x, y, epoch=1))
    # without classes: the mean over the experts; one expert: its logits
    torch.testing.assert_close(expert_soft_labels(net, torch.stack([p[1] for p in traj.params]), x),
                               torch.stack([net.forward(p[1], x) for p in traj.params]).mean(0))
    torch.testing.assert_close(expert_soft_labels(net, traj.params[0][1], x), net.forward(traj.params[0][1], x))


def test_correct_flag():
    from ddfad_fast.cli.entry import build_parser
    from ddfad_fast.cli.run import apply_overrides
    args = build_parser().parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--init", "correct"])
    assert apply_overrides(get_preset("cpu-small"), args).distill.init == "correct"


# ----------------------------------------------------------------------------- moving average (ema_decay)

def _ema_config(**changes) -> DistillConfig:
    return _config(cpc=2, iterations=6).replace(**changes)


def _iterates(split, traj, config):
    """The initial set and every iterate x_1..x_I of a run without a moving average."""
    seen = []
    start = distill(split.x_train, split.y_train, traj, config.replace(iterations=0), progress=False).features
    distill(split.x_train, split.y_train, traj, config.replace(eval_every=1), progress=False,
            evaluate_fn=lambda x, y, lr: seen.append(x) or {"mean": 0.0})
    return [start] + seen


def test_result_is_the_moving_average_of_the_iterates(trajectories):
    split, traj = trajectories
    decay = 0.7
    iterates = _iterates(split, traj, _ema_config())
    expected = iterates[0].clone()
    for x in iterates[1:]:
        expected = decay * expected + (1 - decay) * x
    result = distill(split.x_train, split.y_train, traj, _ema_config(ema_decay=decay), progress=False)
    torch.testing.assert_close(result.features, expected, rtol=1e-6, atol=1e-6)
    # the average is not the last iterate: the test would see a run that ignores ema_decay
    assert (result.features - iterates[-1]).abs().max() > 1e-3
    # alpha and the path of x itself do not depend on the average
    plain = distill(split.x_train, split.y_train, traj, _ema_config(), progress=False)
    assert plain.alpha == result.alpha and torch.equal(plain.features, iterates[-1])


def test_resume_keeps_the_average(trajectories, tmp_path):
    split, traj = trajectories
    config = _ema_config(ema_decay=0.5)
    full = distill(split.x_train, split.y_train, traj, config, progress=False)
    distill(split.x_train, split.y_train, traj, config.replace(iterations=3), out_dir=tmp_path, progress=False)
    resumed = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path, resume=True, progress=False)
    assert torch.equal(resumed.features, full.features)
    checkpoint = tmp_path / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=True)
    assert torch.equal(saved["x_ema"], full.features)
    with pytest.raises(FileFormatError, match="ema_decay"):   # another decay is another run
        distill(split.x_train, split.y_train, traj, config.replace(ema_decay=0.9, iterations=8), out_dir=tmp_path,
                resume=True, progress=False)
    saved["x_ema"] = saved["x_ema"][:1]                      # a tampered average is refused, naming the field
    torch.save(saved, checkpoint)
    with pytest.raises(FileFormatError, match="x_ema"):
        distill(split.x_train, split.y_train, traj, config.replace(iterations=8), out_dir=tmp_path, resume=True,
                progress=False)


@pytest.mark.parametrize("decay", [-0.1, 1.0, float("nan")])
def test_bad_ema_decay(trajectories, decay):
    split, traj = trajectories
    with pytest.raises(ParameterError, match="ema_decay"):
        distill(split.x_train, split.y_train, traj, _ema_config(ema_decay=decay), progress=False)


def test_ema_flag():
    from ddfad_fast.cli.entry import build_parser
    from ddfad_fast.cli.run import apply_overrides
    parser = build_parser()
    args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--ema-decay", "0.9"])
    assert apply_overrides(get_preset("cpu-small"), args).distill.ema_decay == 0.9
    args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o"])
    assert apply_overrides(get_preset("cpu-small"), args).distill.ema_decay == 0.0
    args = parser.parse_args(["distill", "--data", "d", "--experts", "e", "--cpc", "1", "--out", "o", "--ema-decay", "0.5"])
    assert args.ema_decay == 0.5
