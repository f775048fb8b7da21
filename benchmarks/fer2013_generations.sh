#!/usr/bin/env bash
# Three generations of fer_vgg on FER2013, each distilled online from an ensemble of the last:
#   1. the four fer_vgg teacher variants and their equal-weight ensemble ens_four.json (fer2013_ens_four.sh);
#   2. students of ens_four.json with fertrain/configs/fer2013_student_vgg_ensemble.yaml, one per seed in
#      SEEDS (1337 2 3; two or more), and their equal-weight ensemble ens_born.json (fer2013_born_again.sh);
#   3. the same script with FROM=ens_born.json GENERATION=gen3: students of ens_born.json with the same
#      config, one per seed in GEN3_SEEDS (1337 2), and their ensemble ens_gen3.json when there are two or more.
# Every run and ensemble is evaluated on PublicTest single view and ten-crop (an ensemble's evaluation also
# reports how its members agree). Re-running the same command resumes; training stops TIME_LIMIT_S after
# the start.
# The same commands one after another, as one fertrain command: runners/plans/fer2013_generations.yaml
# (SEEDS="1337 2 3 4" GEN3_SEEDS="1337 2"). This script runs them side by side on the visible GPUs.
# TEACHER_FLAGS go to every teacher, STUDENT_FLAGS to every student (both "--aug trivial=0": the generations
# measured before the configs gained `trivial: 1`).
# Usage: [SEEDS="1337 2 3"] [GEN3_SEEDS="1337 2"] [TEACHER_FLAGS=...] [STUDENT_FLAGS=...] benchmarks/fer2013_generations.sh MANIFEST OUT TIME_LIMIT_S
# Writes OUT/teachers/, OUT/ens_four.*, OUT/born_again/sSEED/, OUT/ens_born.*, OUT/gen3/sSEED/, OUT/ens_gen3.*
set -uo pipefail
manifest=$1; out=$2; deadline=$(( $(date +%s) + $3 ))
left() { echo $(( deadline - $(date +%s) )); }
here=$(dirname "$0")
specs() { for seed in "$@"; do echo "s$seed=--seed $seed ${STUDENT_FLAGS:-}"; done; }
mapfile -t gen2 < <(specs ${SEEDS:-1337 2 3})
mapfile -t gen3 < <(specs ${GEN3_SEEDS:-1337 2})
[ "$(left)" -gt 60 ] || exit 0
bash "$here/fer2013_born_again.sh" "$manifest" "$out" "$(left)" "${gen2[@]}"
[ -f "$out/ens_born.json" ] && [ "$(left)" -gt 60 ] || exit 0
FROM=$out/ens_born.json GENERATION=gen3 bash "$here/fer2013_born_again.sh" "$manifest" "$out" "$(left)" "${gen3[@]}"
