#!/usr/bin/env bash
# The ensemble-distilled fer_vgg student of docs/accuracy.md over three seeds, with every model's
# calibration measured twice: a temperature fitted on single-view logits and one fitted on ten-crop
# logits (`fertrain calibrate --tta ten`), each judged against ECE's sampling-noise floor.
#   1. the four fer_vgg teacher variants (dropout; zoom-out + shift; both; both + erasing), 120 epochs;
#   2. their equal-weight ensemble (ens_four.json, the students' teacher; both by fer2013_ens_four.sh) and a weight-searched one
#      (`fertrain ensemble --search-weights --exclude-overlap`);
#   3. students: fertrain/configs/fer2013_student_vgg_ensemble.yaml from ens_four.json, seeds SEEDS (1337 2 3);
#   4. once all are finished, copies of every teacher, ensemble and student calibrated on the 3,309
#      PublicTest faces without training duplicates (single view, then ten-crop) and evaluated with the
#      matching TTA (the copies keep the members the students learned from untouched).
# Re-running the same command resumes: finished steps are skipped, unfinished runs go on from their
# checkpoint. Training stops TIME_LIMIT_S after the start (a device call's budget; runs resume at
# the next call) and no training starts with less than a minute left.
# Usage: benchmarks/fer2013_student_seeds.sh MANIFEST OUT TIME_LIMIT_S
set -uo pipefail
manifest=$1; out=$2
seeds=${SEEDS:-1337 2 3}
deadline=$(( $(date +%s) + $3 ))
left() { echo $(( deadline - $(date +%s) )); }
here=$(dirname "$0")
fer() { python3 -m fertrain "$@"; }
# shellcheck source=benchmarks/timed.sh
. "$here/timed.sh"  # finished RUN_DIR
mkdir -p "$out/students" "$out/calibrated"
teachers=(drop zoom zoomdrop zde)
[ "$(left)" -gt 60 ] || exit 0
bash "$here/fer2013_ens_four.sh" "$manifest" "$out" "$(left)" || exit 0
members=(); for t in "${teachers[@]}"; do members+=("$out/teachers/$t"); done
if [ ! -f "$out/ens_search.json" ]; then
  searched=(); for m in "${members[@]}"; do searched+=(--member "$m"); done
  fer ensemble "${searched[@]}" --search-weights --exclude-overlap --manifest "$manifest" --out "$out/ens_search.json" \
      -j 8 >> "$out/ens.log" 2>&1
fi
calibrated() {  # NAME SOURCE: a copy of SOURCE (run dir or ensemble JSON) calibrated and evaluated per TTA
  local name=$1 src=$2 copy
  if [ -d "$src" ]; then copy=$out/calibrated/$name; [ -d "$copy" ] || cp -r "$src" "$copy"
  else copy=$out/calibrated/$name.json; [ -f "$copy" ] || cp "$src" "$copy"; fi
  for tta in none ten; do
    [ -f "$out/calibrated/$name.$tta.done" ] && continue
    fer calibrate "$copy" --manifest "$manifest" --split val --exclude-overlap --tta "$tta" -j 4 \
        > "$out/calibrated/$name.calibrate-$tta.log" 2>&1 &&
      fer evaluate "$copy" --manifest "$manifest" --split val --tta "$tta" -j 4 > /dev/null \
        2>> "$out/calibrated/$name.log" && touch "$out/calibrated/$name.$tta.done"
  done
}
# teachers first, then the ensembles (their copies point at the original members, left unchanged)
for t in "${teachers[@]}"; do calibrated "$t" "$out/teachers/$t" & done
wait
for e in four search; do calibrated "ens_$e" "$out/ens_$e.json" & done
wait
[ "$(left)" -gt 60 ] || exit 0
students=(); for seed in $seeds; do students+=("s$seed=--teacher $out/ens_four.json --seed $seed"); done
COMMAND=student CONFIG=fertrain/configs/fer2013_student_vgg_ensemble.yaml TTA="none ten" \
    bash "$here/fer2013_runs.sh" "$manifest" "$out/students" 250 "$(left)" \
    "${students[@]}"
for seed in $seeds; do finished "$out/students/s$seed" || exit 0; done
for seed in $seeds; do calibrated "s$seed" "$out/students/s$seed" & done
wait
python3 -m fertrain runs compare "$out/calibrated" --json "$out/calibrated/summary.json" -q
