"""Selection-based initialisation and partial updates (DistillConfig.init, distill_fraction) and their flags."""
import pytest
import torch

from helpers import tiny_trajectories
from ddfad_fast.config import DistillConfig
from ddfad_fast.errors import FileFormatError, ParameterError
from ddfad_fast.presets import get_preset
from ddfad_fast.train.distill import distill
from ddfad_fast.train.distill_state import update_mask
from ddfad_fast.train.evaluate import herding_subset
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
    assert set(record) == {"git_commit", "date", "load_average_1_5_15", "cpu_count"}
    assert record["git_commit"] == git_commit() and record["git_commit"]
    # outside a git checkout: the environment's value, else "unknown", never another repository's HEAD
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as folder:
        assert git_commit(Path(folder)) in ("unknown", __import__("os").environ.get("DDFAD_GIT_COMMIT"))
