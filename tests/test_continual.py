"""ddfad continual: task sequences, the GDumb and fine-tuning protocols, the command on a tiny run (report
files, resume without retraining, clear errors)."""
import json
import statistics

import pytest
import torch

from ddfad_fast.cli import main
from ddfad_fast.config import EvalConfig, ModelConfig
from ddfad_fast.apps.continual import finetune, gdumb, of_classes, task_sequence
from ddfad_fast.errors import ParameterError


def test_task_sequence_is_a_seeded_partition():
    tasks = task_sequence(10, 4, seed=3)
    assert [len(t) for t in tasks] == [3, 3, 2, 2] and sorted(sum(tasks, [])) == list(range(10))
    assert task_sequence(10, 4, seed=3) == tasks and task_sequence(10, 4, seed=4) != tasks
    with pytest.raises(ParameterError, match="tasks"):
        task_sequence(3, 4, seed=0)


def _blobs(n_per_class=6, classes=4):
    """Train and test clips: a random mean per class plus noise."""
    gen = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(classes, 3, 6, 10, generator=gen)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    draw = lambda: (means[y] + torch.randn(len(y), 3, 6, 10, generator=gen), y)      # noqa: E731
    return draw(), draw()


def test_protocols_learn_and_test_on_the_seen_classes_only():
    train, test = _blobs()
    memory = (train[0][::3], train[1][::3])
    tasks = task_sequence(4, 2, seed=0)
    model = ModelConfig(width=4, depth=2)
    config = EvalConfig(num_nets=1, epochs=30, batch_size=8, lr=0.05)
    curve = gdumb(memory, test, tasks, model, config, seed=0)
    assert len(curve) == 2 and all(0.5 < a <= 1.0 for a in curve)
    curve = finetune(memory, train, test, tasks, model, config, epochs=5, seed=0, num_classes=4)
    assert len(curve) == 2 and curve[0] > 0.5
    x, y = of_classes(*test, tasks[0])
    assert set(y.tolist()) == set(tasks[0]) and len(x) == len(y)


@pytest.mark.usefixtures("single_thread")
def test_continual_command_on_a_tiny_run(tmp_path, monkeypatch, capsys, tiny_run):
    run = tiny_run
    args = ["continual", "--run", str(run), "--tasks", "3", "--seeds", "2", "--epochs-per-task", "1"]
    assert main(args) == 0
    report = json.loads((run / "continual" / "report.json").read_text())
    assert report["memory"] == 2 and report["task_sizes"] == [1, 1, 1]
    for protocol in ("gdumb", "finetune"):
        for memory in ("distilled", "random", "herding"):
            row = report["results"][protocol][memory]
            assert len(row["curves"]) == 2 and len(row["mean"]) == 3
            assert row["mean"] == pytest.approx([statistics.fmean(t) for t in zip(*row["curves"])])
            assert row["mean_over_tasks"] == pytest.approx(statistics.fmean(statistics.fmean(c) for c in row["curves"]))
    assert "| mean over tasks |" in (run / "continual" / "report.md").read_text()
    assert main(args) == 2 and "--resume" in capsys.readouterr().err          # never overwritten silently
    import ddfad_fast.apps.continual as continual
    monkeypatch.setattr(continual, "gdumb", lambda *a, **k: pytest.fail("retrained a finished curve"))
    assert main(args + ["--resume"]) == 0                                    # every curve kept
    assert main(["continual", "--run", str(run), "--memory", "3"]) == 2      # more than the distilled set holds
    assert main(["continual", "--run", str(tmp_path / "data")]) == 2         # not a run folder
