#!/usr/bin/env bash
# FER2013 accuracy recipe on one GPU: two resnet18 teachers side by side (the shipped recipe and
# one ablation), then test-time augmentation on PublicTest, post-hoc calibration and the soft
# labels of the training faces from the recipe's teacher.
# Usage: benchmarks/fer2013_recipe.sh MANIFEST OUT "ABLATION FLAGS" [EPOCHS] [TIME_LIMIT_S]
# Writes OUT/{recipe,ablation}/ (run directories), OUT/softlabels.parquet and OUT/summary.json.
set -uo pipefail
manifest=$1; out=$2; ablation=$3; epochs=${4:-150}; limit=${5:-100000}
fer() { python3 -m fertrain "$@"; }
cfg=fertrain/configs/fer2013_resnet18.yaml
# shellcheck disable=SC2086  # the ablation flags are words
timeout -s INT "$limit" python3 -m fertrain teacher --config "$cfg" --manifest "$manifest" --epochs "$epochs" \
    --output-dir "$out/recipe" --skip-onnx -q > "$out/recipe.log" 2>&1 &
timeout -s INT "$limit" python3 -m fertrain teacher --config "$cfg" --manifest "$manifest" --epochs "$epochs" \
    $ablation --output-dir "$out/ablation" --skip-onnx -q > "$out/ablation.log" 2>&1 &
wait
for run in recipe ablation; do
  for tta in none flip ten; do
    fer evaluate "$out/$run" --manifest "$manifest" --split val --tta "$tta" -j 8 > /dev/null 2>> "$out/$run.log"
  done
done
fer calibrate "$out/recipe" --manifest "$manifest" --split val --exclude-overlap -j 8 >> "$out/recipe.log" 2>&1
fer export-softlabels --teacher "$out/recipe" --manifest "$manifest" --split train --out "$out/softlabels.parquet" \
    -b 512 -j 8 -q >> "$out/recipe.log" 2>&1
fer runs compare "$out" --json "$out/summary.json" --plot "$out/compare.png"
