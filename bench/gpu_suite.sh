#!/usr/bin/env bash
# One-call GPU suite for a lent H100/H200 (fresh checkout; torch with CUDA, triton, nvcc preinstalled;
# no network needed):
#     bash bench/gpu_suite.sh          # results and logs in $OUT, or bench/results/gpu_suite/ when OUT is unset
# Stages (each logged to its own file, its status appended to stages.txt; a failing stage does not stop
# the others): compile-only checks (nvcc registers / spills) -> editable install building ddfad_fast._C with
# the CUDA sources (falls back to a JIT build of csrc/cuda if the extension does not import) -> benchmark ->
# GPU tests -> Triton kernel tests on the GPU (no interpreter). Each stage has a time cap so that the whole
# suite ends within SUITE_BUDGET seconds (default 480: 8 minutes, so that it can run twice in a lease).
# Files written (7): stages.txt compile_checks.log install.log (environment first) bench.log gpu_bench.json
# gpu_tests.log triton_tests.log. Without CUDA it runs the compile-only checks and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET="${SUITE_BUDGET:-480}"
OUT_DIR="${OUT:-bench/results/gpu_suite}"
mkdir -p "$OUT_DIR"
STATUS="$OUT_DIR/stages.txt"
: > "$STATUS"
FAILED=0
PY="${PYTHON:-python3}"
# a copy of the sources unpacked inside another git checkout names its commit in DDFAD_GIT_COMMIT: the results
# record that, not the surrounding checkout's HEAD
if [ -n "${DDFAD_GIT_COMMIT:-}" ]; then export GIT_DIR=/nonexistent-ddfad-git-dir; fi
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME CAP_SECONDS COMMAND...: run under a time cap (never past the budget), log to NAME.log
# (or to $LOG_NAME.log when set; appended to it when APPEND is set)
stage() {
  local name="$1" cap="$2"; shift 2
  local left; left=$(remaining)
  if [ "$left" -lt 20 ]; then echo "$name SKIPPED(out of time)" | tee -a "$STATUS"; FAILED=1; return; fi
  [ "$cap" -gt "$left" ] && cap="$left"
  local t0 rc=0; t0=$(date +%s)
  echo "== $name (cap ${cap}s): $*"
  local log="$OUT_DIR/${LOG_NAME:-$name}.log"
  [ -n "${APPEND:-}" ] || : > "$log"
  timeout --kill-after=10 "$cap" "$@" >> "$log" 2>&1 || rc=$?
  tail -n 15 "$log"
  local dt=$(( $(date +%s) - t0 ))
  if [ "$rc" -eq 0 ]; then echo "$name ok ${dt}s" | tee -a "$STATUS"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "$name TIMEOUT(${cap}s)" | tee -a "$STATUS"; FAILED=1
  else echo "$name FAILED(rc=$rc) ${dt}s" | tee -a "$STATUS"; FAILED=1; fi
}

stage compile_checks 90 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda_sources.py

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device here: ran the compile-only checks only" | tee -a "$STATUS"
  exit 0
fi
unset TRITON_INTERPRET

{
  "$PY" -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))"
  "$PY" -c "import torchaudio; print('torchaudio', torchaudio.__version__)" || echo "torchaudio: not importable"
  "$PY" -c "import librosa; print('librosa', librosa.__version__)" || echo "librosa: not importable (tests use the torch reference)"
  nvcc --version | tail -n 2
  nvidia-smi
} > "$OUT_DIR/install.log" 2>&1
head -n 4 "$OUT_DIR/install.log"

# editable install: maps kernels/ to ddfad_fast.kernels and builds ddfad_fast._C (CPU + CUDA sources)
export MAX_JOBS="${MAX_JOBS:-16}"
APPEND=1 stage install 200 "$PY" -m pip install --no-build-isolation --no-deps -v -e .
if ! "$PY" -c "import ddfad_fast.kernels" 2>/dev/null; then
  # the package as installed would be: ddfad_fast/ with kernels/ mapped into it (symlinks, no copy)
  echo "editable install unusable: importing the source tree through a symlink overlay" | tee -a "$STATUS"
  OVERLAY="$(mktemp -d)/site"
  mkdir -p "$OVERLAY/ddfad_fast"
  ln -s "$PWD"/ddfad_fast/* "$OVERLAY/ddfad_fast/"
  ln -s "$PWD/kernels" "$OVERLAY/ddfad_fast/kernels"
  export PYTHONPATH="$OVERLAY${PYTHONPATH:+:$PYTHONPATH}"
fi
# (the extension links libtorch without an rpath: torch is imported first, as the package itself does)
if ! "$PY" -c "import torch, ddfad_fast._C" >> "$OUT_DIR/install.log" 2>&1; then
  echo "ddfad_fast._C does not import: JIT-building csrc/cuda (DDFAD_CUDA_JIT=1)" | tee -a "$STATUS"
  export DDFAD_CUDA_JIT=1
fi
# (with DDFAD_CUDA_JIT=1 this first check builds the operators; later processes load them from the cache)
timeout 240 "$PY" - >> "$OUT_DIR/install.log" 2>&1 <<'EOF'
import torch
from ddfad_fast.ops import _ext, dispatch as backends, gpu
print("CUDA ops loaded:", gpu._cuda_ops_loaded(), {op: _ext.has_cuda_kernel(op) for op in gpu.CUDA_OPS})
print("candidates:", {op: backends.candidates(op, "cuda", torch.float32) for op in ("fd_mfcc", "griffin_lim")})
EOF
tail -n 2 "$OUT_DIR/install.log" | tee -a "$STATUS"

stage bench 180 env DDFAD_BENCH_DIRTY_OK=1 "$PY" bench/gpu_bench.py --out "$OUT_DIR"
stage gpu_tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider --durations=15 tests/test_gpu.py tests/test_gpu_griffin_lim.py
stage triton_tests 60 "$PY" -m pytest -q -rs -p no:cacheprovider --durations=10 tests/test_triton_kernels.py

echo "== total $(( $(date +%s) - START ))s"
cat "$STATUS"
grep -E "^(winner|\[MET\]|\[MISSED\])" "$OUT_DIR/bench.log" 2>/dev/null
exit "$FAILED"
