"""CUDA sources compile (nvcc -arch=sm_90, compile only) and the torch bindings pass a C++ syntax check.

* Every csrc/cuda/*.cu compiles for sm_90; ptxas reports no local-memory stack frame and no register
  spills for the float32 kernels (a register array indexed at run time would land there), at most 128
  registers a thread for them (float64 kernels: a few spilled bytes, 255 registers); the per-clip kernels
  fit the blocks per SM they are compiled for (__launch_bounds__) with 0 bytes spilled.
* bench/results/cuda_resources.json (bench/gpu_resources.py: the committed record of registers, spills and
  shared memory) matches what nvcc reports now, when this nvcc is the version it records.
* The bindings (csrc/cuda/*.cpp) pass g++ -fsyntax-only against torch's headers and the CUDA headers.
  A CPU-only torch wheel ships c10/cuda headers but not the generated c10/cuda/impl/cuda_cmake_macros.h,
  so the test supplies an empty one in tmp_path (it only holds build-configuration macros).
The kernels' logic is tested on the CPU in tests/test_cuda_logic.py, on a GPU in tests/test_gpu.py.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_resources  # noqa: E402

CUDA_DIR = ROOT / "csrc" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))
CPP_FILES = sorted(CUDA_DIR.glob("*.cpp"))
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


def test_sources_exist():
    names = {p.name for p in CU_FILES + CPP_FILES}
    assert {"fd_mfcc_kernels.cu", "fd_mfcc_clip.cu", "griffin_lim_kernels.cu", "fd_mfcc_bind.cpp",
            "griffin_lim_bind.cpp"} <= names


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: p.name)
def test_cu_compiles_for_sm90(source, tmp_path):
    cmd = [NVCC, "-c", "-std=c++17", "-arch=sm_90", "-O3", "-Xptxas", "-v", f"-I{CUDA_DIR}", str(source),
           "-o", str(tmp_path / (source.stem + ".o"))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    report = gpu_resources.ptxas_report(proc.stderr)
    assert report, proc.stderr
    for k in report:
        name, registers = k["mangled"], k["registers"]
        is_fp64 = re.search(r"kernelId", name) is not None     # mangled: first template argument double
        assert registers <= (255 if is_fp64 else 128), (name, registers)
        assert k["spill_stores"] + k["spill_loads"] <= (64 if is_fp64 else 0), k
        assert is_fp64 or k["stack"] == 0, k
        m = re.search(r"fd_mfcc_clip_kernelILi\d+ELi\d+ELi\d+ELi\d+ELi\d+ELi(\d+)E", name)
        if m:                                                   # __launch_bounds__(256, blocks per SM)
            assert registers <= 65536 // (256 * int(m.group(1))), (name, registers)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_committed_resources_match_the_sources(tmp_path):
    """The committed register / spill record is the sources' (rerun bench/gpu_resources.py after a kernel change)."""
    committed = json.loads((ROOT / "bench" / "results" / "cuda_resources.json").read_text())
    if committed["nvcc"] != gpu_resources.nvcc_version(NVCC):
        pytest.skip(f"recorded with nvcc {committed['nvcc']}, this is {gpu_resources.nvcc_version(NVCC)}")
    assert set(committed["files"]) == {p.name for p in CU_FILES}
    keys = ("registers", "stack", "spill_stores", "spill_loads", "smem")
    for source in CU_FILES:
        now = gpu_resources.compile_report(source, NVCC, tmp_path)
        want = {k["mangled"]: tuple(k[x] for x in keys) for k in committed["files"][source.name]["kernels"]}
        assert {k["mangled"]: tuple(k[x] for x in keys) for k in now["kernels"]} == want, source.name


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
@pytest.mark.parametrize("source", CPP_FILES, ids=lambda p: p.name)
def test_binding_syntax(source, tmp_path):
    from torch.utils.cpp_extension import include_paths

    candidates = ([Path(NVCC).resolve().parents[1] / "include"] if NVCC else []) + [Path("/usr/local/cuda/include")]
    found = [d for d in candidates if (d / "cuda_runtime.h").exists()]
    if not found:
        pytest.skip(f"CUDA headers not found in {candidates}")
    cuda_include = found[0]
    stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cmd = ["g++", "-fsyntax-only", "-std=c++17", "-Wall", "-DWITH_CUDA", f"-I{tmp_path / 'stub'}", f"-I{CUDA_DIR}",
           f"-I{cuda_include}"] + [f"-I{p}" for p in include_paths()] + [str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
