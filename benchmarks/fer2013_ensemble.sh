#!/usr/bin/env bash
# An equal-weight ensemble of finished FER2013 runs: `fertrain ensemble`, calibrated on PublicTest
# without its training duplicates, then evaluated on PublicTest with every TTA mode in TTA ("none ten").
# Usage: benchmarks/fer2013_ensemble.sh MANIFEST OUT NAME RUN_DIR...   (writes OUT/ens_NAME.*)
set -euo pipefail
manifest=$1; out=$2; name=$3; shift 3
members=(); for run in "$@"; do members+=(--member "$run:1"); done
fer() { python3 -m fertrain "$@"; }
fer ensemble "${members[@]}" --out "$out/ens_$name.json" >> "$out/ens.log" 2>&1
fer calibrate "$out/ens_$name.json" --manifest "$manifest" --split val --exclude-overlap -j 8 >> "$out/ens.log" 2>&1
for tta in ${TTA:-none ten}; do
  fer evaluate "$out/ens_$name.json" --manifest "$manifest" --split val --tta "$tta" -j 8 > /dev/null 2>> "$out/ens.log"
done
