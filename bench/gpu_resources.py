"""Registers, spills, stack and shared memory of every CUDA kernel, from ``nvcc -arch=sm_90 -Xptxas -v``.

The evidence available without a GPU: compiles each csrc/cuda/*.cu for sm_90 as setup.py does (-O3) and
writes bench/results/cuda_resources.json (nvcc version, commit, date, and per kernel: demangled name,
registers, stack frame, spill stores / loads, static shared memory; the launch bounds the kernel is compiled
for are in its name's template arguments or in the source). tests/test_cuda_sources.py checks that the
committed file still matches what nvcc reports for the sources, when its nvcc version is the one recorded.

Usage: python bench/gpu_resources.py [--out bench/results/cuda_resources.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
OUT = ROOT / "bench" / "results" / "cuda_resources.json"


def nvcc_path() -> Optional[str]:
    found = shutil.which("nvcc")
    if found:
        return found
    return "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release ([\d.]+), (V[\d.]+)", out)
    return m.group(2) if m else out.strip().splitlines()[-1]


def ptxas_report(stderr: str) -> List[Dict[str, object]]:
    """Per entry function of ``ptxas -v``: mangled name, registers, stack, spill stores / loads, shared bytes."""
    out: List[Dict[str, object]] = []
    cur: Dict[str, object] = {}
    for line in stderr.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            cur = {"mangled": m.group(1), "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0}
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and cur:
            cur.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            cur["registers"] = int(m.group(1))
            m2 = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(m2.group(1)) if m2 else 0
            out.append(cur)
            cur = {}
    return out


def stable_name(mangled: str) -> str:
    """The mangled name without the per-path hash nvcc gives anonymous namespaces (the same on every machine)."""
    return re.sub(r"\d+_GLOBAL__N__[0-9a-f]+_\d+_\w+?_[0-9a-f]{8}(?=\d)", "ANON", mangled)


def demangle(names: List[str]) -> List[str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if not tool:
        return names
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def compile_report(source: Path, nvcc: str, workdir: Path) -> Dict[str, object]:
    cmd = [nvcc, "-c", "-std=c++17", "-arch=sm_90", "-O3", "-Xptxas", "-v", f"-I{CUDA_DIR}", str(source),
           "-o", str(workdir / (source.stem + ".o"))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    kernels = ptxas_report(proc.stderr)
    for k, name in zip(kernels, demangle([str(k["mangled"]) for k in kernels])):
        k["kernel"] = re.sub(r"ddfad::\(anonymous namespace\)::", "", name)
        k["mangled"] = stable_name(str(k["mangled"]))
    return {"returncode": proc.returncode, "stderr": proc.stderr if proc.returncode else "", "kernels": kernels}


def resources() -> Dict[str, object]:
    nvcc = nvcc_path()
    if nvcc is None:
        raise SystemExit("nvcc not found")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import git_commit
    with tempfile.TemporaryDirectory() as tmp:
        files = {p.name: compile_report(p, nvcc, Path(tmp)) for p in sorted(CUDA_DIR.glob("*.cu"))}
    return {"nvcc": nvcc_version(nvcc), "arch": "sm_90", "flags": "-O3 -std=c++17 -Xptxas -v",
            "git_commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report = resources()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for name, f in report["files"].items():
        for k in f["kernels"]:
            print(f"{name:24s} regs {k['registers']:3d}  stack {k['stack']:3d}  spill {k['spill_stores']:3d}/"
                  f"{k['spill_loads']:3d}  smem {k['smem']:5d}  {k['kernel'][:110]}")
    print(f"wrote {args.out} (nvcc {report['nvcc']}, commit {report['git_commit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
