#!/usr/bin/env bash
# Three generations of fer_vgg on FER2013, each distilled online from an ensemble of the last:
#   1. the four fer_vgg teacher variants and their equal-weight ensemble ens_four.json (fer2013_ens_four.sh);
#   2. students of ens_four.json with fertrain/configs/fer2013_student_vgg_ensemble.yaml, one per seed in
#      SEEDS (1337 2 3; two or more), and their equal-weight ensemble ens_born.json (fer2013_born_again.sh);
#   3. students of ens_born.json with the same config, one per seed in GEN3_SEEDS (1337 2), and their
#      ensemble ens_gen3.json when there are two or more.
# Every run and ensemble is evaluated on PublicTest single view and ten-crop (an ensemble's evaluation also
# reports how its members agree). Re-running the same command resumes; training stops TIME_LIMIT_S after
# the start.
# Usage: [SEEDS="1337 2 3"] [GEN3_SEEDS="1337 2"] benchmarks/fer2013_generations.sh MANIFEST OUT TIME_LIMIT_S
# Writes OUT/teachers/, OUT/ens_four.*, OUT/born_again/sSEED/, OUT/ens_born.*, OUT/gen3/sSEED/, OUT/ens_gen3.*
set -uo pipefail
manifest=$1; out=$2; deadline=$(( $(date +%s) + $3 ))
left() { echo $(( deadline - $(date +%s) )); }
here=$(dirname "$0")
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
seeds=(); for seed in ${SEEDS:-1337 2 3}; do seeds+=("s$seed=--seed $seed"); done
[ "$(left)" -gt 60 ] || exit 0
bash "$here/fer2013_born_again.sh" "$manifest" "$out" "$(left)" "${seeds[@]}"
[ -f "$out/ens_born.json" ] || exit 0
[ "$(left)" -gt 60 ] || exit 0
gen3=(); dirs=()
for seed in ${GEN3_SEEDS:-1337 2}; do
  gen3+=("s$seed=--teacher $out/ens_born.json --seed $seed"); dirs+=("$out/gen3/s$seed")
done
COMMAND=student CONFIG=fertrain/configs/fer2013_student_vgg_ensemble.yaml TTA="none ten" \
    bash "$here/fer2013_runs.sh" "$manifest" "$out/gen3" "${EPOCHS:-250}" "$(left)" "${gen3[@]}"
for run in "${dirs[@]}"; do finished "$run" || exit 0; done
[ "${#dirs[@]}" -lt 2 ] || [ -f "$out/ens_gen3.evaluation_fer2013_val_tta-ten.json" ] ||
  bash "$here/fer2013_ensemble.sh" "$manifest" "$out" gen3 "${dirs[@]}"
