"""The report's yardstick (apps/stats.py): gap closed, the paired bootstrap, the per-clip results of evaluations."""
import json

import pytest
import torch

from helpers import make_split
from ddfad_fast.apps.report import markdown, yardstick_rows
from ddfad_fast.apps.stats import (bootstrap_differences, compare, correctness, gap_closed, interval_text,
                                   paired_bootstrap, strip_correctness, yardstick)
from ddfad_fast.config import EvalConfig, ModelConfig
from ddfad_fast.errors import ParameterError
from ddfad_fast.presets import get_preset
from ddfad_fast.train.evaluate import evaluate_training_set, expert_soft_labels
from ddfad_fast.train.models import build_model


def _rows(p: float, nets: int = 5, clips: int = 300, seed: int = 0) -> torch.Tensor:
    """(nets, clips) correctness: each clip right with probability ``p``, nets agreeing on most clips."""
    gen = torch.Generator().manual_seed(seed)
    easy = torch.rand(clips, generator=gen)
    noise = 0.05 * torch.randn(nets, clips, generator=gen)
    return ((easy + noise) < p).double()


def test_gap_closed():
    assert gap_closed(0.791, 0.283, 0.992) == pytest.approx(0.508 / 0.709)
    assert gap_closed(0.99, 0.9, 0.95) == pytest.approx(1.8)          # above the full data: beyond 100 %
    assert gap_closed(0.2, 0.3, 0.9) == pytest.approx(-0.1 / 0.6)
    assert gap_closed(0.5, None, 0.9) is None and gap_closed(0.5, 0.4, None) is None
    assert gap_closed(None, 0.4, 0.9) is None and gap_closed(0.5, 0.9, 0.9) is None
    assert gap_closed(float("nan"), 0.4, 0.9) is None


def test_a_case_by_hand():
    # one net, four clips: a gets clips 0 and 1 right, b only clip 0 -> +25 points
    a, b = torch.tensor([[1.0, 1, 0, 0]]), torch.tensor([[1.0, 0, 0, 0]])
    out = paired_bootstrap(a, b, resamples=500, seed=3)
    assert out["diff_pts"] == pytest.approx(25.0)
    # the paired difference per clip is (0, 1, 0, 0): a resample's difference is 25 x (times clip 1 was drawn)
    diffs = bootstrap_differences(a, b, resamples=500, seed=3)
    assert torch.allclose(diffs * 4, (diffs * 4).round()) and diffs.min() >= 0 and diffs.max() <= 1
    assert 0 <= out["ci95_pts"][0] <= 25 <= out["ci95_pts"][1] <= 100
    # two nets: a's mean 3/4, b's 2/4
    two = paired_bootstrap(torch.tensor([[1.0, 1], [1, 0]]), torch.tensor([[0.0, 1], [0, 1]]), resamples=50)
    assert two["diff_pts"] == pytest.approx(25.0) and two["nets"] == [2, 2] and two["clips"] == 2
    # rows that never differ have a zero-width interval
    same = paired_bootstrap(torch.ones(3, 10), torch.zeros(3, 10), resamples=100)
    assert same["diff_pts"] == 100 and same["ci95_pts"] == [100, 100]
    assert "paired bootstrap over test clips and evaluation nets, B=100" in same["method"]


@pytest.mark.parametrize("n_b", [4, 3])
def test_against_an_explicit_loop(n_b):
    """The weighted computation equals resampling the matrices index by index, with the documented draws."""
    a, b = _rows(0.7, nets=4, clips=23, seed=1), _rows(0.6, nets=n_b, clips=23, seed=2)
    got = bootstrap_differences(a, b, resamples=30, seed=7, chunk=30)
    gen = torch.Generator().manual_seed(7)
    clips = torch.randint(23, (30, 23), generator=gen)
    nets_a = torch.randint(4, (30, 4), generator=gen)
    nets_b = nets_a if n_b == 4 else torch.randint(n_b, (30, n_b), generator=gen)
    want = torch.stack([a[nets_a[r]][:, clips[r]].mean() - b[nets_b[r]][:, clips[r]].mean() for r in range(30)])
    assert torch.allclose(got, want, atol=1e-12)
    # in chunks: each chunk's draws in the same order
    chunked = bootstrap_differences(a, b, resamples=30, seed=7, chunk=20)
    gen = torch.Generator().manual_seed(7)
    want = []
    for r in (20, 10):
        clips = torch.randint(23, (r, 23), generator=gen)
        nets_a = torch.randint(4, (r, 4), generator=gen)
        nets_b = nets_a if n_b == 4 else torch.randint(n_b, (r, n_b), generator=gen)
        want += [a[nets_a[k]][:, clips[k]].mean() - b[nets_b[k]][:, clips[k]].mean() for k in range(r)]
    assert torch.allclose(chunked, torch.stack(want), atol=1e-12)


def test_interval_negative_when_distilled_is_worse():
    worse, better = _rows(0.80, seed=4), _rows(0.90, seed=4)          # the same clips are hard for both
    out = paired_bootstrap(worse, better, seed=0)
    assert out["diff_pts"] < 0 and out["ci95_pts"][0] < out["ci95_pts"][1] < 0


def test_interval_excludes_zero_and_covers_the_difference():
    out = paired_bootstrap(_rows(0.95, seed=5), _rows(0.85, seed=5))
    lo, hi = out["ci95_pts"]
    assert 0 < lo <= out["diff_pts"] <= hi
    # a 1-point difference on 300 clips with independent errors cannot be called
    noisy = paired_bootstrap(_rows(0.90, seed=6), _rows(0.89, seed=7))
    assert noisy["ci95_pts"][0] < 0 < noisy["ci95_pts"][1]


def test_deterministic_with_a_seed():
    a, b = _rows(0.9, seed=8), _rows(0.88, seed=9)
    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11)["ci95_pts"] != paired_bootstrap(a, b, seed=12)["ci95_pts"]


def test_bad_input():
    with pytest.raises(ParameterError, match="same clips"):
        bootstrap_differences(torch.ones(2, 5), torch.ones(2, 6))
    with pytest.raises(ParameterError, match="same clips"):
        bootstrap_differences(torch.ones(5), torch.ones(5))
    with pytest.raises(ParameterError, match="resamples"):
        bootstrap_differences(torch.ones(1, 5), torch.ones(1, 5), resamples=0)
    with pytest.raises(ParameterError, match="'0'/'1'"):
        correctness({"test_correct": ["0101", "01x1"]})
    with pytest.raises(ParameterError, match="'0'/'1'"):
        correctness({"test_correct": ["0101", "011"]})
    assert correctness({"accs": [0.5]}) is None and compare({"accs": [1]}, None) is None
    assert compare({"test_correct": ["01"]}, {"test_correct": ["011"]}) is None      # other clips: no pairing


def test_evaluations_keep_per_clip_results():
    split = make_split()
    config = EvalConfig(num_nets=2, epochs=3, batch_size=16)
    model = ModelConfig(width=4, depth=2)
    r = evaluate_training_set(split.x_train, split.y_train, split.x_test, split.y_test, model, config)
    assert len(r["test_correct"]) == 2 and all(len(s) == len(split.y_test) for s in r["test_correct"])
    assert [s.count("1") / len(s) for s in r["test_correct"]] == r["accs"]
    # the strings say which clips: a net's predictions decide them
    net = build_model(model, split.in_shape, 4)
    logits = expert_soft_labels(net, net.init_params(torch.Generator().manual_seed(0)), split.x_train, batch_size=5)
    assert logits.shape == (len(split.y_train), 4) and not logits.requires_grad
    soft = evaluate_training_set(split.x_train, logits, split.x_test, split.y_test, model, config)
    assert len(soft["test_correct"]) == 2


def _entry(rows: torch.Tensor) -> dict:
    return {"mean": float(rows.mean()), "std": 0.0, "accs": rows.mean(1).tolist(),
            "test_correct": ["".join("1" if v else "0" for v in r.bool().tolist()) for r in rows]}


def test_yardstick_and_report():
    acc = {"cpc1": {"distilled": {"convnet": _entry(_rows(0.8, seed=1))},
                    "random": {"convnet": _entry(_rows(0.3, seed=1))},
                    "herding": {"convnet": _entry(_rows(0.45, seed=1))}},
           "cpc10": {"distilled": {"convnet": _entry(_rows(0.9, seed=2)), "vgg": _entry(_rows(0.85, seed=2))},
                     "random": {"convnet": _entry(_rows(0.85, seed=2)), "vgg": _entry(_rows(0.8, seed=2))},
                     "herding": {"convnet": _entry(_rows(0.93, seed=2)), "vgg": _entry(_rows(0.9, seed=2))}},
           "full": {"convnet": _entry(_rows(0.99, seed=3))}}
    out = yardstick(acc, [1, 10], ["convnet", "vgg"])
    assert out["gap_closed"]["cpc1"]["convnet"] == pytest.approx(
        gap_closed(acc["cpc1"]["distilled"]["convnet"]["mean"], acc["cpc1"]["random"]["convnet"]["mean"],
                   acc["full"]["convnet"]["mean"]))
    assert out["gap_closed"]["cpc10"]["vgg"] is None                     # no full-data row for vgg
    c1 = out["comparisons"]["cpc1"]["distilled_vs_herding"]
    assert c1["diff_pts"] > 0 and c1["ci95_pts"][0] > 0 and c1["baseline"] == "herding" and c1["model"] == "convnet"
    c10 = out["comparisons"]["cpc10"]
    assert c10["distilled_vs_herding"]["ci95_pts"][1] < 0                # herding wins here
    assert set(c10["by_model"]) == {"convnet", "vgg"}
    results = {"preset": get_preset("cpu-small").to_dict(), "data": "d", "cpcs": [1, 10], "classes": ["a"],
               "num_train": 3, "num_test": 300, "accuracy": strip_correctness(acc), **out}
    assert "test_correct" not in json.dumps(results["accuracy"])
    rows = yardstick_rows(results)
    assert [r[:2] for r in rows] == [["1", "convnet"], ["10", "convnet"], ["10", "vgg"]]
    assert rows[0][3] == interval_text(c1) and rows[2][2] == "-"
    md = markdown(results, [])
    assert "## Against the baselines (test split)" in md and interval_text(c1) in md
    assert f"| 1 | convnet | {100 * out['gap_closed']['cpc1']['convnet']:.0f} % |" in md


def test_soft_label_baselines_are_compared_when_the_distilled_set_learns_labels():
    acc = {"cpc1": {"distilled": {"convnet": _entry(_rows(0.8, seed=1))},
                    "random": {"convnet": _entry(_rows(0.3, seed=1))},
                    "random_soft": {"convnet": _entry(_rows(0.5, seed=1))},
                    "herding": {"convnet": _entry(_rows(0.45, seed=1))},
                    "herding_soft": {"convnet": _entry(_rows(0.6, seed=1))}},
           "full": {"convnet": _entry(_rows(0.99, seed=3))}}
    hard = yardstick(acc, [1], ["convnet"])
    soft = yardstick(acc, [1], ["convnet"], soft=True)
    assert hard["comparisons"]["cpc1"]["distilled_vs_herding"]["baseline"] == "herding"
    assert soft["comparisons"]["cpc1"]["distilled_vs_herding"]["baseline"] == "herding_soft"
    assert soft["comparisons"]["cpc1"]["distilled_vs_random"]["baseline"] == "random_soft"
    assert (soft["comparisons"]["cpc1"]["distilled_vs_herding"]["diff_pts"] <
            hard["comparisons"]["cpc1"]["distilled_vs_herding"]["diff_pts"])
    assert soft["gap_closed"]["cpc1"]["convnet"] < hard["gap_closed"]["cpc1"]["convnet"]
    results = {"cpcs": [1], "accuracy": acc, **soft}
    assert yardstick_rows(results)[0][3].endswith("(soft labels)")


def test_run_report_holds_the_yardstick(cli_run):
    _, run = cli_run
    report = json.loads((run / "report.json").read_text())
    comparison = report["comparisons"]["cpc2"]["distilled_vs_herding"]
    assert set(comparison) >= {"diff_pts", "ci95_pts", "method"} and comparison["baseline"] == "herding"
    lo, hi = comparison["ci95_pts"]
    assert lo <= comparison["diff_pts"] <= hi and comparison["clips"] == report["num_test"]
    distilled, herding = (report["accuracy"]["cpc2"][k]["convnet"]["mean"] for k in ("distilled", "herding"))
    assert comparison["diff_pts"] == pytest.approx(100 * (distilled - herding))
    assert "cpc2" in report["gap_closed"] and "test_correct" not in json.dumps(report["accuracy"])
    saved = json.loads((run / "eval.json").read_text())
    assert len(saved["cpc2"]["distilled"]["convnet"]["test_correct"][0]) == report["num_test"]
    assert "Against the baselines" in (run / "report.md").read_text()
    assert "Against the baselines" in (run / "report.html").read_text()


def test_soft_label_runs_evaluate_the_baselines_with_soft_labels(cli_run, tmp_path):
    from ddfad_fast.cli import main
    from helpers import TINY_RUN
    data, _ = cli_run
    threads = torch.get_num_threads()
    try:
        assert main(["run", "--data", str(data), "--cpc", "2", "--out", str(tmp_path / "soft"), "--labels", "soft",
                     "--no-audio", *TINY_RUN]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "soft" / "report.json").read_text())
    rows = report["accuracy"]["cpc2"]
    assert {"random_soft", "herding_soft"} <= set(rows)
    assert report["comparisons"]["cpc2"]["distilled_vs_herding"]["baseline"] == "herding_soft"
    assert "(soft labels)" in (tmp_path / "soft" / "report.md").read_text()
    assert "herding coreset, expert soft labels" in (tmp_path / "soft" / "report.md").read_text()
