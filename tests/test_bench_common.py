"""bench/_common.py: every result records its commit (with a hash of uncommitted changes), the date and the load
average, and a result meant for bench/results is refused from a dirty tree."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import _common  # noqa: E402


def test_machine_record_has_commit_date_and_load(monkeypatch, tmp_path):
    monkeypatch.setattr(_common, "backend_info", lambda: {})
    path = _common.write_json("probe", [{"a": 1}], {"x": 2}, out_dir=tmp_path)
    record = json.loads(path.read_text())
    machine = record["machine"]
    assert record["rows"] == [{"a": 1}] and record["x"] == 2
    assert machine["date"][:4].isdigit() and len(machine["load_average_1_5_15"]) == 3
    assert machine["git_commit"].split("+")[0] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                                                 capture_output=True).stdout.strip()


def test_dirty_tree_is_named_by_its_diff_and_refused_for_committed_results(monkeypatch, tmp_path):
    monkeypatch.setattr(_common, "backend_info", lambda: {})
    import ddfad_fast.provenance
    monkeypatch.setattr(ddfad_fast.provenance, "git_commit", lambda: "abc+dirty:0123456789ab")
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.delenv("DDFAD_BENCH_OUT", raising=False)
    monkeypatch.delenv("DDFAD_BENCH_DIRTY_OK", raising=False)
    with pytest.raises(SystemExit, match="uncommitted changes"):
        _common.write_json("probe", [])
    with pytest.raises(SystemExit, match="uncommitted changes"):                        # a report's folder in it
        _common.write_json("timing", [], out_dir=tmp_path / "results" / "some_report")
    assert not list(tmp_path.rglob("*.json"))
    monkeypatch.setenv("DDFAD_BENCH_DIRTY_OK", "1")
    record = json.loads(_common.write_json("probe", []).read_text())
    assert record["machine"]["git_commit"] == "abc+dirty:0123456789ab"
    assert _common.write_json("elsewhere", [], out_dir=tmp_path / "scratch").is_file()   # scratch output: allowed


def test_git_commit_hashes_the_diff():
    commit = _common.git_commit()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True, capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "HEAD", "--quiet"], cwd=ROOT).returncode != 0
    assert commit == head if not dirty else (commit.startswith(head + "+dirty:") and len(commit.split(":")[-1]) == 12)


def test_run_command_records_time_memory_and_earlier_runs(monkeypatch, tmp_path):
    import run_command
    monkeypatch.setattr(_common, "backend_info", lambda: {})
    out = tmp_path / "timing.json"
    grow = [sys.executable, "-c", "import time; block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(0.2)"]
    assert run_command.main(["--out", str(out), "--", *grow]) == 0
    first = json.loads(out.read_text())
    row = first["rows"][0]
    assert first["command"] == " ".join(grow) and first["earlier"] == [] and first["machine"]["git_commit"]
    assert row["wall_s"] >= 0.2 and row["max_rss_kib"] >= 300 * 1024 and row["user_s"] + row["system_s"] > 0
    assert run_command.main(["--out", str(out), "--fresh-compile-cache", "--", *grow]) == 0
    second = json.loads(out.read_text())
    assert second["rows"][0]["fresh_compile_cache"] and second["earlier"] == [{k: v for k, v in first.items()
                                                                                       if k != "earlier"}]
    assert run_command.main(["--out", str(out), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert json.loads(out.read_text()) == second                                        # a failed run writes nothing


def test_run_command_refuses_a_dirty_tree_before_running(monkeypatch, tmp_path):
    import ddfad_fast.provenance
    import run_command
    monkeypatch.setattr(_common, "backend_info", lambda: {})
    monkeypatch.setattr(ddfad_fast.provenance, "git_commit", lambda: "abc+dirty:0123456789ab")
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv("DDFAD_BENCH_DIRTY_OK", raising=False)
    marker = tmp_path / "ran"
    with pytest.raises(SystemExit, match="uncommitted changes"):
        run_command.main(["--out", str(tmp_path / "report" / "timing.json"), "--", sys.executable, "-c",
                          f"open({str(marker)!r}, 'w')"])
    assert not marker.exists()
