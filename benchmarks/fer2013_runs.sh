#!/usr/bin/env bash
# FER2013 runs side by side: one `fertrain teacher` (or COMMAND=student) per NAME=FLAGS argument, all
# at once, spread round-robin over the visible GPUs (several runs share a GPU when there are more
# runs than GPUs: at 48-112 px one run leaves most of an H100/H200 idle). Every run starts from
# CONFIG (default: the shipped teacher recipe fertrain/configs/fer2013_resnet18.yaml) with its own flags on top. Re-running the same
# command resumes unfinished runs from their checkpoint_last.pt (taking over the lock of a run that died
# without releasing it: --recover-stale-lock refuses a holder that is still alive); each finished run is
# then evaluated on PublicTest with every TTA mode in TTA ("none ten"), once.
# Usage: benchmarks/fer2013_runs.sh MANIFEST OUT EPOCHS TIME_LIMIT_S NAME=FLAGS...
#   benchmarks/fer2013_runs.sh fer2013.parquet out 120 560 vgg48="--backbone fer_vgg --img-size 48" \
#       recipe=""
# Writes OUT/NAME/ (run directories), OUT/NAME.log, and OUT/summary.json and OUT/compare.png (`fertrain runs compare`),
# and OUT/seeds.json: the runs that differ only in --seed as one row of means and stds (`--seeds`).
set -uo pipefail
manifest=$1; out=$2; epochs=$3; limit=$4; shift 4
cfg=${CONFIG:-fertrain/configs/fer2013_resnet18.yaml}
command=${COMMAND:-teacher}
ttas=${TTA:-none ten}
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"  # finished RUN_DIR; bytecode written once (the lent machines ship none)
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
mkdir -p "$out"
on_gpu() {  # INDEX CMD...: run CMD on GPU INDEX mod the GPU count (as is without GPUs)
  local index=$1; shift
  if [ "${gpus:-0}" -gt 0 ]; then CUDA_VISIBLE_DEVICES=$((index % gpus)) "$@"; else "$@"; fi
}
i=0
for spec in "$@"; do
  name=${spec%%=*}; flags=${spec#*=}
  if ! finished "$out/$name"; then
    # shellcheck disable=SC2086  # the flags are words
    on_gpu $i timeout -s INT "$limit" python3 -m fertrain "$command" --config "$cfg" --manifest "$manifest" \
        --epochs "$epochs" $flags --output-dir "$out/$name" --skip-onnx -q --recover-stale-lock >> "$out/$name.log" 2>&1 &
  fi
  i=$((i + 1))
done
wait
i=0
for spec in "$@"; do
  name=${spec%%=*}
  if finished "$out/$name"; then
    ( for tta in $ttas; do
        [ -f "$out/$name/evaluation_fer2013_val$([ "$tta" = none ] || echo "_tta-$tta").json" ] ||
          on_gpu $i python3 -m fertrain evaluate "$out/$name" --manifest "$manifest" --split val --tta "$tta" \
              -j 4 > /dev/null 2>> "$out/$name.log"
      done ) &
  fi
  i=$((i + 1))
done
wait
python3 -m fertrain runs compare "$out" --json "$out/summary.json" --plot "$out/compare.png" -q
python3 -m fertrain runs compare "$out" --seeds --json "$out/seeds.json" -q
