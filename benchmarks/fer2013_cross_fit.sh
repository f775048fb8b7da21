#!/usr/bin/env bash
# Cross-fitted (out-of-fold) soft labels and the students distilled from them. FOLDS (5) fold runs
# (`fertrain FOLD_COMMAND --config FOLD_CONFIG --fold K --folds FOLDS` TEACHER_FLAGS, TEACHER_EPOCHS
# epochs, sharing the GPUs; by default fer_vgg teachers: FOLD_COMMAND teacher, FOLD_CONFIG
# fertrain/configs/fer2013_vgg.yaml, 120 epochs), each calibrated for SOFT_TTA (ten) views and single view on the
# PublicTest faces without training duplicates; then one `fertrain export-softlabels --out-of-fold` that labels every
# training face with the fold run that never saw it (OUT/oof_SOFT_TTA.parquet); the equal-weight
# ensemble of the fold runs, calibrated and evaluated (OUT/ens_folds.json, fer2013_ensemble.sh);
# then one `fertrain student --config STUDENT_CONFIG FLAGS` (fertrain/configs/fer2013_student_vgg_ensemble.yaml) per
# NAME=FLAGS, EPOCHS (250) epochs, evaluated single view and ten-crop. In FLAGS, {oof} stands for the
# soft-label file and {ens} for the fold ensemble. Re-running the same command resumes; training stops
# TIME_LIMIT_S after the start. A second round: fold runs that are students of first-round labels
# (FOLD_COMMAND=student TEACHER_FLAGS="--softlabels OOF1.parquet"), whose own out-of-fold labels then teach.
# Usage: benchmarks/fer2013_cross_fit.sh MANIFEST OUT TIME_LIMIT_S NAME=FLAGS...
#   benchmarks/fer2013_cross_fit.sh fer2013.parquet out 560 oof_t2="--softlabels {oof} -T 2" \
#       both="--teacher {ens} --label-targets {oof}"
#   FOLD_COMMAND=student FOLD_CONFIG=fertrain/configs/fer2013_student_fer_resnet18_oof.yaml TEACHER_EPOCHS=250 \
#       TEACHER_FLAGS="--softlabels out/oof_ten.parquet" STUDENT_CONFIG=fertrain/configs/fer2013_student_fer_resnet18_oof.yaml \
#       benchmarks/fer2013_cross_fit.sh fer2013.parquet out2 560 fres="--softlabels {oof}"
# Writes OUT/folds/foldK/, OUT/oof_SOFT_TTA.parquet, OUT/ens_folds.*, OUT/students/NAME/
set -uo pipefail
manifest=$1; out=$2; deadline=$(( $(date +%s) + $3 )); shift 3
left() { echo $(( deadline - $(date +%s) )); }
here=$(dirname "$0")
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
folds=${FOLDS:-5}; tta=${SOFT_TTA:-ten}
specs=(); teachers=(); fold_runs=()
for k in $(seq 0 $((folds - 1))); do
  specs+=("fold$k=--fold $k --folds $folds ${TEACHER_FLAGS:-}"); fold_runs+=("$out/folds/fold$k")
  teachers+=(--teacher "$out/folds/fold$k")
done
mkdir -p "$out/folds"
COMMAND=${FOLD_COMMAND:-teacher} CONFIG=${FOLD_CONFIG:-fertrain/configs/fer2013_vgg.yaml} TTA="none ten" \
    bash "$here/fer2013_runs.sh" "$manifest" "$out/folds" \
    "${TEACHER_EPOCHS:-120}" "$(left)" "${specs[@]}"
for run in "${fold_runs[@]}"; do finished "$run" || exit 0; done
# the folds side by side (each a few seconds of GPU work after its start-up), each fold's views in order: the soft
# labels' views first, single view last, since an ensemble member serves its latest temperature
pids=()
for run in "${fold_runs[@]}"; do
  ( for views in $(echo "$tta none" | tr ' ' '\n' | awk '!seen[$0]++'); do
      [ -f "$run.calibrated_$views" ] || { python3 -m fertrain calibrate "$run" --manifest "$manifest" --tta "$views" \
          --exclude-overlap -j 2 >> "$run.log" 2>&1 && touch "$run.calibrated_$views"; } || exit 1
    done ) &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "calibration failed: ${fold_runs[$i]}.log" >&2; exit 1; }
done
soft=$out/oof_$tta.parquet
[ -f "$soft" ] || timed "oof_$tta" python3 -m fertrain export-softlabels --out-of-fold "${teachers[@]}" \
    --manifest "$manifest" --tta "$tta" --out "$soft" -j 4
[ -f "$soft" ] || { echo "export failed: $out/oof_$tta.log" >&2; exit 1; }
ens=$out/ens_folds.json
[ -f "$out/ens_folds.evaluation_fer2013_val_tta-ten.json" ] ||
  bash "$here/fer2013_ensemble.sh" "$manifest" "$out" folds "${fold_runs[@]}" || exit 1
[ "$(left)" -gt 60 ] || exit 0
runs=(); for spec in "$@"; do spec=${spec//\{oof\}/$soft}; runs+=("${spec//\{ens\}/$ens}"); done
COMMAND=student CONFIG=${STUDENT_CONFIG:-fertrain/configs/fer2013_student_vgg_ensemble.yaml} TTA="none ten" \
    bash "$here/fer2013_runs.sh" "$manifest" "$out/students" "${EPOCHS:-250}" "$(left)" "${runs[@]}"
