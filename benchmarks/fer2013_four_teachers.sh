#!/usr/bin/env bash
# FER2013 on a 4-GPU machine: four resnet18 teachers of the shipped recipe at once (one per GPU:
# the recipe, --mixup 0, --seed 2, --img-size 64), then each with ten-crop TTA on PublicTest and
# ensembles of them (equal weights, calibrated on PublicTest without its training duplicates).
# Re-running it resumes unfinished runs (a run directory resumes from checkpoint_last.pt).
# Usage: benchmarks/fer2013_four_teachers.sh MANIFEST OUT [EPOCHS=300] [TRAIN_LIMIT_S=100000] [post]
# Writes OUT/{recipe,mixup0,seed2,px64}/, OUT/ens_*.json and OUT/summary.json ("post": evaluate too).
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-300}; limit=${4:-100000}; post=${5:-}
cfg=fertrain/configs/fer2013_resnet18.yaml
fer() { python3 -m fertrain "$@"; }
declare -A flags=([recipe]="" [mixup0]="--mixup 0" [seed2]="--seed 2" [px64]="--img-size 64")
gpu=0
for run in recipe mixup0 seed2 px64; do
  # shellcheck disable=SC2086  # the flags are words
  CUDA_VISIBLE_DEVICES=$gpu timeout -s INT "$limit" python3 -m fertrain teacher --config "$cfg" \
      --manifest "$manifest" --epochs "$epochs" ${flags[$run]} --output-dir "$out/$run" --skip-onnx -q \
      >> "$out/$run.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait
[ "$post" = post ] || exit 0
gpu=0
for run in recipe mixup0 seed2 px64; do
  ( for tta in none ten; do
      CUDA_VISIBLE_DEVICES=$gpu python3 -m fertrain evaluate "$out/$run" --manifest "$manifest" --split val \
          --tta "$tta" -j 4 > /dev/null 2>> "$out/$run.log"
    done ) &
  gpu=$((gpu + 1))
done
wait
ensemble() {  # NAME RUN...
  local name=$1; shift
  local members=(); for r in "$@"; do members+=(--member "$out/$r:1"); done
  fer ensemble "${members[@]}" --out "$out/ens_$name.json" >> "$out/ens.log" 2>&1
  fer calibrate "$out/ens_$name.json" --manifest "$manifest" --split val --exclude-overlap -j 8 >> "$out/ens.log" 2>&1
  for tta in none ten; do
    fer evaluate "$out/ens_$name.json" --manifest "$manifest" --split val --tta "$tta" -j 8 > /dev/null 2>> "$out/ens.log"
  done
}
ensemble two recipe mixup0 &
ensemble three recipe mixup0 seed2 &
ensemble four recipe mixup0 seed2 px64 &
wait
python3 benchmarks/summarize_runs.py "$out"
