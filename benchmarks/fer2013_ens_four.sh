#!/usr/bin/env bash
# The four fer_vgg teacher variants of docs/accuracy.md (dropout; zoom-out + shift; both; both +
# erasing; `fertrain teacher --config fertrain/configs/fer2013_vgg.yaml`, TEACHER_EPOCHS (120) epochs each,
# sharing the GPUs) and their equal-weight ensemble OUT/ens_ENS.json (ENS: four), calibrated on the
# 3,309 PublicTest faces without training duplicates and evaluated single view and ten-crop: the
# teacher of the ensemble-distilled students. TEACHER_SEEDS gives each variant its own `--seed` (default: all
# 1337, the recipe's); a variant with another seed is named NAME_sSEED. TEACHER_FLAGS go to every
# variant (e.g. "--aug trivial=0": the variants measured before the config gained `trivial: 1`).
# Re-running resumes; training stops TIME_LIMIT_S after the start.
# Usage: [TEACHER_SEEDS="2 3 4 5" ENS=four_seeded] [TEACHER_FLAGS=...] benchmarks/fer2013_ens_four.sh MANIFEST OUT TIME_LIMIT_S
#   (writes OUT/teachers/, OUT/ens_ENS.*)
set -uo pipefail
manifest=$1; out=$2
here=$(dirname "$0")
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
ens=${ENS:-four}
read -r -a seeds <<< "${TEACHER_SEEDS:-1337 1337 1337 1337}"
[ "${#seeds[@]}" -eq 4 ] || { echo "TEACHER_SEEDS: expected four seeds, got '${TEACHER_SEEDS:-}'" >&2; exit 2; }
zoom="--aug scale=[0.64,1.44] --aug translate=0.1"
teachers=(drop zoom zoomdrop zde)
flags=("--drop 0.3" "$zoom" "$zoom --drop 0.3" "$zoom --drop 0.3 --aug erasing=0.5")
specs=(); members=()
for k in 0 1 2 3; do
  name=${teachers[k]}; [ "${seeds[k]}" = 1337 ] || name=${name}_s${seeds[k]}
  specs+=("$name=${flags[k]} --seed ${seeds[k]} ${TEACHER_FLAGS:-}"); members+=("$out/teachers/$name")
done
mkdir -p "$out/teachers"
CONFIG=fertrain/configs/fer2013_vgg.yaml TTA="none ten" bash "$here/fer2013_runs.sh" "$manifest" "$out/teachers" \
    "${TEACHER_EPOCHS:-120}" "$3" "${specs[@]}"
for run in "${members[@]}"; do finished "$run" || exit 1; done
[ -f "$out/ens_$ens.evaluation_fer2013_val_tta-ten.json" ] || bash "$here/fer2013_ensemble.sh" "$manifest" "$out" "$ens" "${members[@]}"
