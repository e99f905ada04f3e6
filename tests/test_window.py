"""The expert start-epoch window: fixed, or chosen by the data ratio (train/window.py), in distillation and flags."""
import argparse

import pytest
import torch

from helpers import tiny_trajectories
from ddfad_fast.config import DistillConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.presets import all_presets, get_preset
from ddfad_fast.train.distill import distill
from ddfad_fast.train.window import (AUTO_MIN_RATIO, data_ratio, ratio_window, resolve_start_window,
                                     start_epoch_window)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_anchors():
    assert ratio_window(0.004) == pytest.approx((0.0, 0.04))
    assert ratio_window(0.04) == pytest.approx((0.0, 0.40))
    assert ratio_window(0.2) == pytest.approx((0.40, 0.60))
    assert ratio_window(1e-5) == pytest.approx((0.0, 0.04))     # constant beyond the anchors
    assert ratio_window(1.0) == pytest.approx((0.40, 0.60))
    # halfway between 0.4 % and 4 % in log10: the end halfway between 4 % and 40 %
    assert ratio_window(0.004 * 10 ** 0.5)[1] == pytest.approx(0.22)


def test_monotone_and_ordered():
    ratios = [10 ** (-4 + 4 * k / 400) for k in range(401)]
    windows = [ratio_window(r) for r in ratios]
    for (a0, a1), (b0, b1) in zip(windows, windows[1:]):
        assert b0 >= a0 - 1e-12 and b1 >= a1 - 1e-12
    assert all(0 <= lo < hi <= 0.6 for lo, hi in windows)
    assert windows[-1][0] > windows[0][0] and windows[-1][1] > windows[0][1]


def test_epochs_of_the_window():
    # FSDD after the validation split: 10 classes, 2,430 training clips, 15-epoch experts, M = 2
    assert start_epoch_window("ratio", 10, 2, 15, 1, 10, 2430) == (0, 1)
    assert start_epoch_window("ratio", 10, 2, 15, 10, 10, 2430) == (0, 6)
    assert start_epoch_window("ratio", 10, 2, 15, 50, 10, 2430) == (6, 9)
    assert start_epoch_window("ratio", 10, 2, 50, 50, 10, 2430) == (20, 30)
    assert start_epoch_window("fixed", 10, 2, 15, 50, 10, 2430) == (0, 10)
    # the end is capped so that the target epoch t + M exists; the start never passes the end
    assert start_epoch_window("ratio", 10, 4, 5, 50, 10, 100) == (1, 1)
    assert start_epoch_window("ratio", 10, 5, 5, 50, 10, 100) == (0, 0)
    assert data_ratio(50, 10, 100) == 1.0


def test_auto_switches_at_the_measured_ratio():
    assert resolve_start_window("auto", AUTO_MIN_RATIO) == "ratio"
    assert resolve_start_window("auto", AUTO_MIN_RATIO * 0.999) == "fixed"
    assert resolve_start_window("fixed", 0.5) == "fixed" and resolve_start_window("ratio", 0.001) == "ratio"
    # FSDD (2,430 training clips): CPC 1 keeps 0.4 % (fixed window), CPC 50 20.6 % (the ratio window)
    assert start_epoch_window("auto", 10, 2, 15, 1, 10, 2430) == (0, 10)
    assert start_epoch_window("auto", 10, 2, 15, 50, 10, 2430) == (6, 9)
    with pytest.raises(ParameterError, match="start_window"):
        resolve_start_window("late", 0.1)


def test_bad_input():
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ParameterError, match="data ratio"):
            ratio_window(bad)
    with pytest.raises(ParameterError, match="start_window"):
        start_epoch_window("late", 10, 2, 15, 1, 10, 100)
    with pytest.raises(ParameterError, match="fewer than"):
        start_epoch_window("ratio", 10, 6, 5, 1, 10, 100)
    with pytest.raises(ParameterError, match=">= 1"):
        data_ratio(0, 10, 100)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    return tiny_trajectories(tmp_path_factory.mktemp("experts"), epochs=10)


@pytest.mark.parametrize("cpc, window", [(1, (0, 4)), (24, (4, 6))])
def test_distillation_draws_inside_the_window(trajectories, cpc, window):
    split, traj = trajectories      # 4 classes, 96 clips: CPC 1 keeps 4.2 %, CPC 24 all of them
    config = DistillConfig(cpc=cpc, syn_steps=2, expert_epochs=2, max_start_epoch=7, iterations=30, lr_data=1.0,
                           compile=False, checkpoint_every=0, eval_every=0, start_window="ratio")
    result = distill(split.x_train, split.y_train, traj, config, progress=False)
    starts = result.history["start_epoch"]
    assert result.history["sessions"][0]["start_epochs"] == list(window)
    assert min(starts) >= window[0] and max(starts) <= window[1]
    assert set(starts) == set(range(window[0], window[1] + 1))       # every epoch of the window is drawn
    fixed = distill(split.x_train, split.y_train, traj, config.replace(start_window="fixed"), progress=False)
    assert max(fixed.history["start_epoch"]) > window[1] or min(fixed.history["start_epoch"]) < window[0]
    assert fixed.history["sessions"][0]["start_epochs"] == [0, 7]
    # "auto": CPC 1 keeps 4.2 % (< 5 %: the fixed window's draws), CPC 24 all of them (the ratio window's)
    auto = distill(split.x_train, split.y_train, traj, config.replace(start_window="auto"), progress=False)
    expected = result if cpc == 24 else fixed
    assert auto.history["start_epoch"] == expected.history["start_epoch"]
    assert auto.history["sessions"][0]["start_window_used"] == ("ratio" if cpc == 24 else "fixed")
    assert auto.history["sessions"][0]["start_window"] == "auto"


def test_bad_window_setting(trajectories):
    split, traj = trajectories
    config = DistillConfig(cpc=1, syn_steps=2, iterations=1, compile=False, start_window="middle")
    with pytest.raises(ParameterError, match="start_window"):
        distill(split.x_train, split.y_train, traj, config, progress=False)
    # a fixed window past the trajectories is refused; the ratio window ignores max_start_epoch
    config = config.replace(start_window="fixed", max_start_epoch=9, expert_epochs=2)
    with pytest.raises(ParameterError, match="max_start_epoch"):
        distill(split.x_train, split.y_train, traj, config, progress=False)
    distill(split.x_train, split.y_train, traj, config.replace(start_window="ratio"), progress=False)
    # "auto" is checked as the window it resolves to: fixed at CPC 1 (4.2 %), the ratio one at CPC 24
    with pytest.raises(ParameterError, match="max_start_epoch"):
        distill(split.x_train, split.y_train, traj, config.replace(start_window="auto"), progress=False)
    distill(split.x_train, split.y_train, traj, config.replace(start_window="auto", cpc=24), progress=False)


def test_flags_and_presets():
    from ddfad_fast.cli.entry import build_parser
    from ddfad_fast.cli.run import apply_overrides
    assert {p.distill.start_window for p in all_presets().values()} == {"auto"}
    assert DistillConfig().start_window == "fixed"          # MTT's window for a bare DistillConfig
    parser = build_parser()
    for flag in ("ratio", "fixed"):
        args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--start-window", flag])
        assert apply_overrides(get_preset("cpu-small"), args).distill.start_window == flag
    args = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o"])
    assert apply_overrides(get_preset("cpu-small"), args).distill.start_window == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--start-window", "late"])
    args = parser.parse_args(["distill", "--data", "d", "--experts", "e", "--cpc", "1", "--out", "o",
                              "--start-window", "ratio"])
    assert isinstance(args, argparse.Namespace) and args.start_window == "ratio"


def test_runs_made_before_the_window_option_resume(cli_run, tmp_path, capsys):
    """run.json of an earlier release has no start_window: it ran the fixed window, which is what it holds when
    read back; resuming it with the presets' "auto" is refused naming the setting, with --start-window fixed
    it resumes."""
    import json
    import shutil

    import torch

    from ddfad_fast.cli import main
    from helpers import TINY_RUN
    data, run = cli_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "run.json").read_text())
    del saved["preset"]["distill"]["start_window"]
    (copy / "run.json").write_text(json.dumps(saved))
    threads = torch.get_num_threads()
    try:
        capsys.readouterr()
        assert main(["run", "--data", str(data), "--cpc", "2", "--out", str(copy), "--resume", *TINY_RUN]) == 2
        assert "preset.distill.start_window: 'fixed' in the run, 'auto' now" in capsys.readouterr().err
        assert main(["run", "--data", str(data), "--cpc", "2", "--out", str(copy), "--resume", "--start-window",
                     "fixed", *TINY_RUN]) == 0
        # another window is another configuration
        assert main(["run", "--data", str(data), "--cpc", "2", "--out", str(copy), "--resume", "--start-window",
                     "ratio", *TINY_RUN]) == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cpc, same", [(1, "fixed"), (24, "ratio")])
def test_auto_resumes_a_checkpoint_of_the_window_it_uses(trajectories, tmp_path, cpc, same):
    """A checkpoint is identified by the window the CPC uses: "auto" resumes one made with that window
    (bit for bit as an uninterrupted run) and refuses one made with the other."""
    from ddfad_fast.errors import FileFormatError
    split, traj = trajectories      # 4 classes, 96 clips: CPC 1 keeps 4.2 % (fixed), CPC 24 all (ratio)
    config = DistillConfig(cpc=cpc, syn_steps=2, expert_epochs=2, max_start_epoch=7, iterations=4, lr_data=1.0,
                           compile=False, checkpoint_every=1, eval_every=0, start_window="auto")
    whole = distill(split.x_train, split.y_train, traj, config, progress=False)
    other = "ratio" if same == "fixed" else "fixed"
    distill(split.x_train, split.y_train, traj, config.replace(start_window=other, iterations=2),
            out_dir=tmp_path / other, progress=False)
    with pytest.raises(FileFormatError, match="start_window"):
        distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / other, resume=True, progress=False)
    distill(split.x_train, split.y_train, traj, config.replace(start_window=same, iterations=2),
            out_dir=tmp_path / same, progress=False)
    resumed = distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / same, resume=True,
                      progress=False)
    assert resumed.history["sessions"][-1]["start_iteration"] == 2
    assert torch.equal(resumed.features, whole.features) and resumed.alpha == whole.alpha
