"""Time one command end to end (a `ddfad run`, say) and write its wall, CPU and memory figures as JSON.

    python bench/run_command.py --out bench/results/fsdd_main_command/timing.json --fresh-compile-cache -- \
        ddfad run --data ../shared/data/fsdd/recordings --cpc 10 --out runs/main_cmd

The JSON holds ``machine`` (commit, date, load average and versions at the start: :func:`_common.machine_info`),
the command, and one row: wall seconds, user and system CPU seconds and page faults of the command and its
children, and the peak resident memory of the largest process it ran (KiB; ``getrusage``: the largest of every
command this process ran, so one command a process). The command's output
is passed through. A file in bench/results is refused from a tree with uncommitted changes (as every benchmark
here); the runs already in the file are kept under ``earlier``, newest first. Exits with the command's status,
writing nothing when it fails.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, refuse_dirty, write_json  # noqa: E402


def earlier_runs(path: Path) -> List[dict]:
    """The runs recorded in ``path`` before this one (its own record first, then its ``earlier``)."""
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    return [{k: v for k, v in record.items() if k != "earlier"}] + list(record.get("earlier", []))


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--fresh-compile-cache", action="store_true",
                        help="run with an empty torch.compile cache (a first run on a new machine)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to time after --")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="ddfad_compile_cache_") as cache:
        if args.fresh_compile_cache:
            env["TORCHINDUCTOR_CACHE_DIR"] = cache
        machine = machine_info()                       # the load before the command ran
        refuse_dirty(args.out, machine["git_commit"])  # before the run, not after it
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        status = subprocess.run(command, env=env).returncode
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    if status != 0:
        print(f"run_command: the command failed with status {status}; nothing written", file=sys.stderr)
        return status
    row = {"wall_s": round(wall, 2), "user_s": round(user, 2), "system_s": round(system, 2),
           "max_rss_kib": after.ru_maxrss, "minor_page_faults": after.ru_minflt - before.ru_minflt,
           "major_page_faults": after.ru_majflt - before.ru_majflt, "fresh_compile_cache": args.fresh_compile_cache}
    earlier = earlier_runs(args.out)
    path = write_json(args.out.stem, [row], {"command": " ".join(command), "earlier": earlier},
                      out_dir=args.out.parent, machine=machine)
    minutes, seconds = divmod(wall, 60)
    print(f"{' '.join(command)}: {int(minutes)} min {seconds:.1f} s wall, user {user:.0f} s, system {system:.0f} s, "
          f"peak {after.ru_maxrss / 2**20:.2f} GiB -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
