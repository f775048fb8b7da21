#!/usr/bin/env bash
# FER2013 on a 4-GPU machine: four resnet18 teachers of the shipped recipe at once (one per GPU:
# the recipe, --mixup 0, --seed 2, --img-size 64), each evaluated with ten-crop TTA on PublicTest
# once finished, and with "post" ensembles of them (equal weights, calibrated on PublicTest
# without its training duplicates). Re-running it resumes unfinished runs.
# Usage: benchmarks/fer2013_four_teachers.sh MANIFEST OUT [EPOCHS=300] [TRAIN_LIMIT_S=100000] [post]
# Writes OUT/{recipe,mixup0,seed2,px64}/, OUT/ens_*.json and OUT/summary.json.
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-300}; limit=${4:-100000}; post=${5:-}
here=$(dirname "$0")
bash "$here/fer2013_runs.sh" "$manifest" "$out" "$epochs" "$limit" recipe= mixup0="--mixup 0" seed2="--seed 2" \
    px64="--img-size 64"
[ "$post" = post ] || exit 0
bash "$here/fer2013_ensemble.sh" "$manifest" "$out" two "$out/recipe" "$out/mixup0" &
bash "$here/fer2013_ensemble.sh" "$manifest" "$out" three "$out/recipe" "$out/mixup0" "$out/seed2" &
bash "$here/fer2013_ensemble.sh" "$manifest" "$out" four "$out/recipe" "$out/mixup0" "$out/seed2" "$out/px64" &
wait
python3 -m fertrain runs compare "$out" --json "$out/summary.json" --plot "$out/compare.png" -q
