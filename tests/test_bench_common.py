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
    monkeypatch.setattr(_common, "git_commit", lambda: "abc+dirty:0123456789ab")
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv("DDFAD_BENCH_OUT", raising=False)
    monkeypatch.delenv("DDFAD_BENCH_DIRTY_OK", raising=False)
    with pytest.raises(SystemExit, match="uncommitted changes"):
        _common.write_json("probe", [])
    assert not (tmp_path / "probe.json").exists()
    monkeypatch.setenv("DDFAD_BENCH_DIRTY_OK", "1")
    record = json.loads(_common.write_json("probe", []).read_text())
    assert record["machine"]["git_commit"] == "abc+dirty:0123456789ab"
    assert _common.write_json("elsewhere", [], out_dir=tmp_path / "scratch").is_file()   # scratch output: allowed


def test_git_commit_hashes_the_diff():
    commit = _common.git_commit()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True, capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "HEAD", "--quiet"], cwd=ROOT).returncode != 0
    assert commit == head if not dirty else (commit.startswith(head + "+dirty:") and len(commit.split(":")[-1]) == 12)
