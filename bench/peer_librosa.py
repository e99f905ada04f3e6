"""librosa 0.11.0's own test suite against ``ddfad_fast.compat.librosa``.

Runs the suite twice in one process each (pytest, single process, network cases skipped with librosa's
``--librosa-isolation``): first with librosa's own functions, then with exactly the attributes compat provides
swapped into librosa (``bench/peer_librosa_plugin.py``: ``feature.{mfcc, melspectrogram, delta}``,
``feature.inverse.{mfcc_to_mel, mel_to_stft, mel_to_audio, mfcc_to_audio}``, ``power_to_db``, ``db_to_power``,
``amplitude_to_db``, ``db_to_amplitude``, ``griffinlim``, ``stft``, ``filters.mel``), every other attribute left
librosa's own. A case counts for a function when it calls that attribute in the first run (its primary function:
the one its test name names, else the first listed it calls); the second run runs only those cases. The pass
rate counts the cases librosa itself passes (cases it skips or fails, e.g. for a missing optional module or data
file, are listed, not counted); such a case passes under the swap when it passes again (or fails as its xfail
mark expects).

Fetches nothing: give the test folder of librosa's tag 0.11.0 with its ``data`` submodule checked out.
Writes bench/results/peer_librosa.json: counts per function, every remaining failure with its reason.

Usage: python bench/peer_librosa.py --librosa-tests /path/to/librosa/tests [--files test_core.py ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, git_commit, refuse_dirty, write_json  # noqa: E402
from peer_librosa_plugin import SWAPPED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = ("test_core.py", "test_features.py", "test_filters.py", "test_multichannel.py", "test_onset.py",
         "test_beat.py", "test_effects.py", "test_decompose.py", "test_segment.py", "test_met_features.py",
         "test_failures.py", "test_convert.py")
OK = ("passed", "xfailed")


def run_suite(tests: Path, files: List[str], mode: str, select: Path = None) -> List[dict]:
    """One pytest run of ``files`` (in ``tests``) with the plugin in ``mode``; the per-case records."""
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "cases.jsonl"
        env = dict(os.environ, DDFAD_PEER_MODE=mode, DDFAD_PEER_RECORD=str(record),
                   PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        if select is not None:
            env["DDFAD_PEER_SELECT"] = str(select)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "peer_librosa_plugin", "-p", "no:cacheprovider",
                   "--librosa-isolation", "-W", "ignore::DeprecationWarning",
                   *[str(Path(tests.name) / name) for name in files]]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tests.parent, env=env, capture_output=True, text=True)
        print(f"{mode}: pytest exit {done.returncode} in {time.perf_counter() - start:.0f} s: "
              f"{(done.stdout.strip().splitlines() or [''])[-1]}", flush=True)
        if not record.exists():
            raise SystemExit(f"pytest wrote no records ({mode} run):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return [json.loads(line) for line in record.read_text().splitlines()]


def primary(nodeid: str, calls: List[str]) -> str:
    """The function a case is counted for: the longest provided name its test name contains, else its first call."""
    test = nodeid.split("::")[-1].split("[")[0].lower()
    named = [name for name in calls if name.split(".")[-1] in test]
    return max(named, key=lambda name: len(name.split(".")[-1])) if named else \
        sorted(calls, key=list(SWAPPED).index)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--librosa-tests", type=Path, required=True,
                        help="librosa's tests folder (tag 0.11.0) with its data submodule")
    parser.add_argument("--files", nargs="+", default=list(FILES), help="test files to run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    refuse_dirty(args.out, git_commit())
    import librosa
    tests = args.librosa_tests.resolve()
    if tests.name != "tests" or not (tests / "data").is_dir():
        raise SystemExit(f"{tests}: expected librosa's 'tests' folder holding its 'data' submodule "
                         "(the cases open tests/data/... from the folder above it)")
    files = [name for name in args.files if (tests / name).exists()]
    base = run_suite(tests, files, "librosa")
    cases = {case["nodeid"]: case for case in base if case["calls"]}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(cases))
        select = Path(handle.name)
    try:
        swapped = {case["nodeid"]: case for case in run_suite(tests, files, "compat", select)}
    finally:
        select.unlink()
    per_function: Dict[str, Dict[str, int]] = {}
    failures, librosa_failures = [], []
    for nodeid, case in cases.items():
        function = primary(nodeid, case["calls"])
        row = per_function.setdefault(function, {"cases": 0, "librosa_pass": 0, "librosa_skip": 0,
                                                 "librosa_fail": 0, "compat_pass": 0, "compat_skip": 0,
                                                 "compat_fail": 0})
        row["cases"] += 1
        theirs = case["outcome"]
        ours = swapped.get(nodeid, {"outcome": "missing", "reason": "not run under the swap"})
        if theirs == "skipped":                      # librosa skips it: not counted either way
            row["librosa_skip"] += 1
            continue
        if theirs not in OK and theirs != "xpassed":  # librosa itself fails it (a missing optional module or
            row["librosa_fail"] += 1                 # data file): not counted, listed
            librosa_failures.append({"case": nodeid, "function": function, "librosa": theirs,
                                     "librosa_reason": case["reason"], "compat": ours["outcome"]})
            continue
        row["librosa_pass"] += 1
        if ours["outcome"] in OK or ours["outcome"] == theirs:
            row["compat_pass"] += 1
        elif ours["outcome"] == "skipped":
            row["compat_skip"] += 1
        else:
            row["compat_fail"] += 1
            failures.append({"case": nodeid, "function": function, "librosa": theirs, "compat": ours["outcome"],
                             "reason": ours["reason"]})
    total = {key: sum(row[key] for row in per_function.values()) for key in next(iter(per_function.values()))}
    runnable = total["librosa_pass"]                 # the cases librosa itself passes
    total["compat_pass_rate"] = round(total["compat_pass"] / max(1, runnable), 4)
    rows = [[name, row["cases"], row["librosa_pass"], row["librosa_skip"], row["librosa_fail"], row["compat_pass"],
             row["compat_skip"], row["compat_fail"]] for name, row in sorted(per_function.items())]
    print(f"{'function':32s} cases lib_pass lib_skip lib_fail compat_pass compat_skip compat_fail")
    for row in rows + [["all", *[total[k] for k in ("cases", "librosa_pass", "librosa_skip", "librosa_fail",
                                                   "compat_pass", "compat_skip", "compat_fail")]]]:
        print(f"{row[0]:32s} " + " ".join(f"{value:>{len(head)}d}" for value, head in
                                          zip(row[1:], ("cases", "lib_pass", "lib_skip", "lib_fail", "compat_pass",
                                                        "compat_skip", "compat_fail"))))
    print(f"pass rate under the swap: {total['compat_pass']} / {runnable} = {100 * total['compat_pass_rate']:.2f} %"
          f" ({len(failures)} failures)")
    path = write_json("peer_librosa", [{"function": name, **row} for name, row in sorted(per_function.items())],
                      {"librosa": librosa.__version__, "librosa_tests": str(tests), "files": files,
                       "swapped": list(SWAPPED), "total": total, "failures": failures,
                       "not_counted_librosa_fails_them": librosa_failures}, out_dir=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
