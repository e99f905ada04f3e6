#!/usr/bin/env bash
# A batch of bench/recipes.py calls run side by side (one GPU, or a many-core CPU): each line is one recipe,
# scored on the validation split. Results: one JSON line per (recipe, CPC) in $LOG.
#     DATA=path/to/fsdd/recordings DEVICE=cuda LOG=bench/results/recipes_gpu.jsonl bash bench/recipes_sweep.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/fsdd/recordings}"
DEVICE="${DEVICE:-cuda}"
LOG="${LOG:-bench/results/recipes.jsonl}"
CAP="${CAP:-420}"
THREADS="${THREADS:-2}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
run() {   # run TAG ARGS...: one recipe in the background, in its own work folder
  local tag="$1"; shift
  timeout "$CAP" python3 bench/recipes.py --data "$DATA" --device "$DEVICE" --threads "$THREADS" --tag "$tag" \
    --work "runs/recipes_$tag" --log "$LOG" "$@" > "runs/recipes_$tag.log" 2>&1 &
}
mkdir -p runs
C="--cpc 1 --cpc 10 --cpc 50"
run hard100      $C --distill iterations=100,compile=false --baselines random,herding,full
run soft100      $C --distill iterations=100,compile=false,labels=soft --baselines ""
run soft300      $C --distill iterations=300,compile=false,labels=soft --baselines ""
run hard300      $C --distill iterations=300,compile=false --baselines ""
run soft300-lr2  $C --distill iterations=300,compile=false,labels=soft,lr_labels=2 --baselines ""
run soft300-e10  $C --expert num_experts=10,epochs=30 --distill iterations=300,compile=false,labels=soft,max_start_epoch=20 --baselines ""
run old-recipe   --cpc 10 --norm channel --aug none --distill iterations=100,compile=false --baselines random,full
wait
for f in runs/recipes_*.log; do echo "== $f"; grep -E "^\[|Error|error" "$f" | tail -5; done
