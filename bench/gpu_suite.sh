#!/usr/bin/env bash
# One-call GPU suite for a lent H100/H200 machine (fresh checkout, torch+CUDA and triton preinstalled).
#   bash bench/gpu_suite.sh            # results and logs in $OUT, or bench/results/ when OUT is unset
# Stages: compile-only checks, editable install (builds ddfad_fast._C with the CUDA sources), GPU tests, Triton kernel tests on
# the GPU (no interpreter), benchmark. Each stage's failure is recorded in stages.txt; the rest still runs.
# Without CUDA it runs only the compile-only checks and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/results}"
mkdir -p "$OUT_DIR"
STATUS="$OUT_DIR/stages.txt"
: > "$STATUS"
FAILED=0

stage() {  # stage NAME COMMAND...: run, log to $OUT_DIR/NAME.log, record ok/FAILED(rc)
  local name="$1"; shift
  local rc=0
  echo "== $name: $*"
  "$@" > "$OUT_DIR/$name.log" 2>&1 || rc=$?
  tail -n 25 "$OUT_DIR/$name.log"
  if [ "$rc" -eq 0 ]; then echo "$name ok" | tee -a "$STATUS"; else echo "$name FAILED($rc)" | tee -a "$STATUS"; FAILED=1; fi
}

stage compile_checks python -m pytest -q tests/test_cuda_sources.py

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device here: ran the compile-only checks only" | tee -a "$STATUS"
  exit 0
fi

unset TRITON_INTERPRET
stage env python -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name(0))"
stage nvidia_smi nvidia-smi
# editable install maps kernels/ to ddfad_fast.kernels and builds ddfad_fast._C (needs no network)
stage install pip install --no-build-isolation --no-deps -e .
if ! python -c "import ddfad_fast.kernels"; then
  echo "editable install unusable: ddfad_fast.kernels not importable" | tee -a "$STATUS"; FAILED=1
fi
stage extension python -c "import torch, ddfad_fast._C; print('ddfad ops:', torch.ops.ddfad.gla_step, torch.ops.ddfad.overlap_add)"
stage gpu_tests python -m pytest -q -rs tests/test_gpu.py
stage triton_tests_on_gpu python -m pytest -q -rs tests/test_triton_kernels.py
stage bench python bench/gpu_bench.py --out "$OUT_DIR"
cat "$STATUS"
exit "$FAILED"
