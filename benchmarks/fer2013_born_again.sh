#!/usr/bin/env bash
# Born-again teachers (Furlanello et al. 2018): networks as large as one teacher or larger, distilled
# online from the four-variant fer_vgg ensemble (fer2013_ens_four.sh) with the ensemble-student
# recipe fertrain/configs/fer2013_student_vgg_ensemble.yaml and their own flags on top, EPOCHS (250)
# epochs each, evaluated single view and ten-crop; then the equal-weight ensemble of all of them.
# FROM=ENSEMBLE.json distils from another ensemble instead (e.g. one of born-again networks: a next
# generation), GENERATION=NAME writes OUT/NAME/ and OUT/ens_NAME.* instead of OUT/born_again/ and OUT/ens_born.*.
# Re-running the same command resumes; training stops TIME_LIMIT_S after the start.
# Usage: benchmarks/fer2013_born_again.sh MANIFEST OUT TIME_LIMIT_S NAME=FLAGS...
#   benchmarks/fer2013_born_again.sh fer2013.parquet out 560 fres="--backbone fer_resnet18"
# Writes OUT/teachers/, OUT/ens_four.* (ENS and TEACHER_SEEDS: see fer2013_ens_four.sh), OUT/born_again/NAME/ and OUT/ens_born.*
set -uo pipefail
manifest=$1; out=$2; deadline=$(( $(date +%s) + $3 )); shift 3
left() { echo $(( deadline - $(date +%s) )); }
here=$(dirname "$0")
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
[ "$(left)" -gt 60 ] || exit 0
bash "$here/fer2013_ens_four.sh" "$manifest" "$out" "$(left)" || exit 0
[ "$(left)" -gt 60 ] || exit 0
teacher=${FROM:-$out/ens_${ENS:-four}.json}
runs_dir=$out/${GENERATION:-born_again}; ens=${GENERATION:-born}
runs=(); for spec in "$@"; do runs+=("${spec%%=*}=--teacher $teacher ${spec#*=}"); done
COMMAND=student CONFIG=fertrain/configs/fer2013_student_vgg_ensemble.yaml TTA="none ten" \
    bash "$here/fer2013_runs.sh" "$manifest" "$runs_dir" "${EPOCHS:-250}" "$(left)" "${runs[@]}"
dirs=(); for spec in "$@"; do finished "$runs_dir/${spec%%=*}" || exit 0; dirs+=("$runs_dir/${spec%%=*}"); done
[ "${#dirs[@]}" -lt 2 ] || [ -f "$out/ens_$ens.evaluation_fer2013_val_tta-ten.json" ] ||
  bash "$here/fer2013_ensemble.sh" "$manifest" "$out" "$ens" "${dirs[@]}"
