"""ddfad nas: the search space, rank correlation, and the command on a tiny run (report, resume after a
kill, clear errors)."""
import json
import math

import pytest

from ddfad_fast.cli import main
from ddfad_fast.errors import ParameterError
from ddfad_fast.apps.nas import arch_name, ranks, search_space, spearman, summarize


def test_search_space_has_48_distinct_architectures():
    space = search_space()
    assert len(space) == 48 and len({arch_name(m) for m in space}) == 48


def test_spearman_matches_its_definition():
    assert ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)    # 1 - 6 * 4 / (5 * 24)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ParameterError):
        spearman([1], [2])


def test_summary_picks_by_validation_and_reports_the_ground_truth_test_accuracy():
    def r(val, test=0.5, seconds=1.0):
        return {"val_mean": val, "mean": test, "seconds": seconds}
    results = {"a": {"p": r(0.9), "full": r(0.5, 0.6, 10)}, "b": {"p": r(0.1), "full": r(0.9, 0.95, 10)},
               "c": {"p": r(0.5), "full": r(0.7, 0.7, 10)}}
    s = summarize(results, ["p"])
    assert s["true_best"] == "b" and s["true_best_test"] == 0.95 and s["truth_seconds"] == 30
    row = s["proxies"]["p"]
    assert row["pick"] == "a" and row["pick_test"] == 0.6 and row["speedup"] == 10 and row["spearman"] == pytest.approx(-1.0)


@pytest.mark.usefixtures("single_thread")
def test_nas_command_on_a_tiny_run_resumes_after_a_kill(tmp_path, monkeypatch, interrupt_call, tiny_run):
    import ddfad_fast.train.evaluate as evaluate
    run = tiny_run
    args = ["nas", "--run", str(run), "--limit", "3", "--proxy-steps", "3", "--full-epochs", "1", "--quiet"]
    real = evaluate.evaluate_training_set
    restore = interrupt_call(evaluate, "evaluate_training_set", 5)
    assert main(args) == 130                                       # interrupted: what finished is saved
    saved = json.loads((run / "nas" / "nas.json").read_text())["results"]
    assert sum(len(v) for v in saved.values()) == 4
    restore()
    assert main(args) == 2                                         # never overwritten without --resume
    calls = {"n": 0}
    monkeypatch.setattr(evaluate, "evaluate_training_set", lambda *a, **k: calls.__setitem__("n", calls["n"] + 1)
                        or real(*a, **k))
    assert main(args + ["--resume"]) == 0 and calls["n"] == 5      # only the 5 missing trainings ran
    report = json.loads((run / "nas" / "report.json").read_text())
    assert len(report["results"]) == 3 and set(report["summary"]["proxies"]) == {"distilled", "random"}
    assert "| distilled |" in (run / "nas" / "report.md").read_text()
    assert main(["nas", "--run", str(run), "--cpc", "7"]) == 2
