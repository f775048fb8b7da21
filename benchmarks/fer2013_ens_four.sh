#!/usr/bin/env bash
# The four fer_vgg teacher variants of docs/accuracy.md (dropout; zoom-out + shift; both; both +
# erasing; `fertrain teacher --config fertrain/configs/fer2013_vgg.yaml`, 120 epochs each, sharing the
# GPUs) and their equal-weight ensemble OUT/ens_four.json, calibrated on the 3,309 PublicTest faces
# without training duplicates and evaluated single view and ten-crop: the teacher of the
# ensemble-distilled students. Re-running resumes; training stops TIME_LIMIT_S after the start.
# Usage: benchmarks/fer2013_ens_four.sh MANIFEST OUT TIME_LIMIT_S   (writes OUT/teachers/, OUT/ens_four.*)
set -uo pipefail
manifest=$1; out=$2
here=$(dirname "$0")
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
zoom="--aug scale=[0.64,1.44] --aug translate=0.1"
teachers=(drop zoom zoomdrop zde)
mkdir -p "$out/teachers"
CONFIG=fertrain/configs/fer2013_vgg.yaml TTA="none ten" bash "$here/fer2013_runs.sh" "$manifest" "$out/teachers" 120 \
    "$3" drop="--drop 0.3" zoom="$zoom" zoomdrop="$zoom --drop 0.3" zde="$zoom --drop 0.3 --aug erasing=0.5"
members=()
for t in "${teachers[@]}"; do finished "$out/teachers/$t" || exit 1; members+=("$out/teachers/$t"); done
[ -f "$out/ens_four.evaluation_fer2013_val_tta-ten.json" ] || bash "$here/fer2013_ensemble.sh" "$manifest" "$out" four "${members[@]}"
