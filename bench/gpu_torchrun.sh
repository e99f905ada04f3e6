#!/usr/bin/env bash
# torchrun on a GPU machine: the nccl path of experts and distill (one process per GPU, --device cuda) against
# the same commands in one plain process. Results in $OUT (default bench/results/gpu_torchrun/).
#     DDFAD_FSDD_DIR=/path/to/recordings bash bench/gpu_torchrun.sh
# With G GPUs it launches G processes (--nproc-per-node G); NCCL allows one process per GPU, so on a
# one-GPU machine this checks the nccl set-up, cuda:LOCAL_RANK and the collectives with one rank.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/results/gpu_torchrun}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
DATA="${DDFAD_FSDD_DIR:-../shared/data/fsdd/recordings}"
WORK="$(mktemp -d)"
GPUS="${NPROC:-$("$PY" -c "import torch; print(torch.cuda.device_count())")}"
DEVICE="${DEVICE:-cuda}"       # DEVICE=cpu NPROC=2: the same check over gloo on a CPU machine
LOG="$OUT_DIR/gpu_torchrun.log"
: > "$LOG"
run() { echo "+ $*" | tee -a "$LOG"; "$@" >> "$LOG" 2>&1; }
TR=("$PY" -m torch.distributed.run --nproc-per-node "$GPUS" --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29512
    -m ddfad_fast.cli)
SMALL=(--data "$DATA" --max-per-class 20 --device "$DEVICE" --deterministic)
K=$(( GPUS > 2 ? GPUS : 2 ))
EXPERTS=(--num-experts "$K" --epochs 4 --width 16 --no-compile --cache "$WORK/cache")
DISTILL=(--cpc 2 --iterations 6 --syn-steps 5 --max-start-epoch 1 --no-compile --quiet --cache "$WORK/cache"
         --trajectories-per-iteration "$K")
{ nvidia-smi -L || true; "$PY" -c "import torch; print('torch', torch.__version__)"; } >> "$LOG" 2>&1
run "$PY" -m ddfad_fast.cli experts "${SMALL[@]}" "${EXPERTS[@]}" --out "$WORK/e_one"
run "${TR[@]}" experts "${SMALL[@]}" "${EXPERTS[@]}" --out "$WORK/e_tr"
run "$PY" -m ddfad_fast.cli distill "${SMALL[@]}" "${DISTILL[@]}" --experts "$WORK/e_one" --out "$WORK/d_one"
run "${TR[@]}" distill "${SMALL[@]}" "${DISTILL[@]}" --experts "$WORK/e_one" --out "$WORK/d_tr"
"$PY" - "$WORK" "$OUT_DIR/gpu_torchrun.json" "$GPUS" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, sys, datetime, pathlib, torch
from ddfad_fast.io import load_artifact
work, out, gpus = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def same(a, b):
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a if k != "config")
experts = sorted(p.name for p in (work / "e_one").glob("expert_*.pt"))
experts_equal = all(same(load_artifact(work / "e_one" / n), load_artifact(work / "e_tr" / n)) for n in experts)
d1, d2 = (load_artifact(work / d / "distilled.pt") for d in ("d_one", "d_tr"))
diff = float((d1["features"] - d2["features"]).abs().max())
cuda = torch.cuda.is_available()
result = {"date": datetime.date.today().isoformat(), "device": torch.cuda.get_device_name(0) if cuda else "cpu",
          "processes": gpus, "backend": "nccl" if cuda else "gloo", "experts": experts, "experts_identical_to_one_process": experts_equal,
          "distilled_max_abs_diff_vs_one_process": diff, "alpha": [float(d1["alpha"]), float(d2["alpha"])]}
print(json.dumps(result, indent=2))
json.dump(result, open(out, "w"), indent=2)
sys.exit(0 if experts_equal and diff <= 1e-5 else 1)
PYEOF
