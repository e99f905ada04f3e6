"""Every training checkpoint records the CPU thread count; resuming with another count says once what it changes."""
import warnings
from contextlib import contextmanager

import pytest
import torch

from ddfad_fast.config import DistillConfig, EvalConfig, ModelConfig
from ddfad_fast.io import load_artifact
from ddfad_fast.train.distill import CHECKPOINT_NAME, distill
from ddfad_fast.train.evaluate import evaluate_training_set
from ddfad_fast.train.experts import load_trajectories, train_experts
from ddfad_fast.errors import ThreadCountWarning
from ddfad_fast.train.threads import check_resume_threads
from helpers import EXPERT_CONFIG, make_split

WRITTEN = 1                                      # the thread count every checkpoint here is written with


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _resumed(call, n: int) -> list:
    """The ThreadCountWarnings of ``call()`` run with ``n`` threads."""
    with threads(n), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, ThreadCountWarning)]


def _check(found: list, n: int) -> None:
    if n == WRITTEN:
        assert found == []
    else:
        assert len(found) == 1
        text = str(found[0].message)
        assert f"resumed with {n} CPU thread(s), written with {WRITTEN}" in text and "bit-identical" in text


def test_check_resume_threads_unit():
    now = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_resume_threads([None, now], "x") is None        # unknown (earlier release) or equal: silent
    with pytest.warns(ThreadCountWarning, match=f"x: resumed with {now} CPU thread"):
        assert "bit-identical" in check_resume_threads([now + 1, None, now + 1], "x")


@pytest.mark.parametrize("resume_threads", [WRITTEN, 2])
def test_expert_checkpoint(tmp_path, interrupt_epoch, resume_threads):
    split, cfg = make_split(), EXPERT_CONFIG.replace(num_experts=2, epochs=3)
    restore = interrupt_epoch(5)                 # expert 1, epoch 2: expert 0 finished, expert 1 part-way
    with threads(WRITTEN), pytest.raises(KeyboardInterrupt):
        train_experts(split, cfg, tmp_path, progress=False)
    restore()
    assert load_artifact(tmp_path / "expert_001.partial.pt")["num_threads"] == WRITTEN
    _check(_resumed(lambda: train_experts(split, cfg, tmp_path, resume=True, progress=False), resume_threads),
           resume_threads)
    assert (tmp_path / "expert_001.pt").is_file()


@pytest.mark.parametrize("resume_threads", [WRITTEN, 2])
def test_distill_checkpoint(tmp_path, resume_threads):
    split = make_split()
    with threads(WRITTEN):
        train_experts(split, EXPERT_CONFIG, tmp_path / "experts", progress=False)
    traj = load_trajectories(tmp_path / "experts")
    config = DistillConfig(cpc=1, syn_steps=2, expert_epochs=1, max_start_epoch=1, iterations=2, batch_syn=2,
                           compile=False, checkpoint_every=1, eval_every=0)
    with threads(WRITTEN):
        distill(split.x_train, split.y_train, traj, config, out_dir=tmp_path / "d", progress=False)
    assert load_artifact(tmp_path / "d" / CHECKPOINT_NAME)["num_threads"] == WRITTEN
    longer = config.replace(iterations=3)
    _check(_resumed(lambda: distill(split.x_train, split.y_train, traj, longer, out_dir=tmp_path / "d", resume=True,
                                    progress=False), resume_threads), resume_threads)
    assert load_artifact(tmp_path / "d" / CHECKPOINT_NAME)["num_threads"] == resume_threads


@pytest.mark.parametrize("resume_threads", [WRITTEN, 2])
def test_evaluation_checkpoint(tmp_path, interrupt_epoch, resume_threads):
    s, model, cfg = make_split(), ModelConfig(width=4, depth=2), EvalConfig(num_nets=2, epochs=4, batch_size=16)
    ckpt = tmp_path / "eval.pt"
    restore = interrupt_epoch(3)
    with threads(WRITTEN), pytest.raises(KeyboardInterrupt):
        evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, model, cfg, checkpoint=ckpt,
                              checkpoint_every=1)
    restore()
    assert load_artifact(ckpt)["num_threads"] == WRITTEN
    _check(_resumed(lambda: evaluate_training_set(s.x_train, s.y_train, s.x_test, s.y_test, model, cfg,
                                                  checkpoint=ckpt, checkpoint_every=1), resume_threads),
           resume_threads)
    assert not ckpt.exists()
