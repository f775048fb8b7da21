#!/usr/bin/env bash
# FER2013 students distilled online from a calibrated teacher run or ensemble JSON, side by side on
# one GPU: fer_vgg_s at 48 px with KD, with DKD and with CE only (no teacher; same config, epochs
# and seed), and mobilenetv3_large_100 at 112 px with DKD (fertrain/configs/fer2013_student.yaml).
# Re-running the same command resumes unfinished students; finished ones are evaluated on
# PublicTest single-view and with ten-crop TTA.
# Usage: benchmarks/fer2013_online_students.sh MANIFEST TEACHER OUT [EPOCHS=100] [MNV3_EPOCHS=70] [TIME_LIMIT_S]
set -uo pipefail
manifest=$1; teacher=$2; out=$3; epochs=${4:-100}; mnv3_epochs=${5:-70}; limit=${6:-100000}
mkdir -p "$out"
student() {  # NAME FLAGS...
  local name=$1; shift
  timeout -s INT "$limit" python3 -m fertrain student --manifest "$manifest" --output-dir "$out/$name" --skip-onnx -q \
      "$@" >> "$out/$name.log" 2>&1
}
vgg=(--config fertrain/configs/fer2013_student_vgg.yaml --epochs "$epochs")
student kd "${vgg[@]}" --teacher "$teacher" &
student dkd "${vgg[@]}" --loss dkd --teacher "$teacher" &
student ce "${vgg[@]}" --loss ce &
student mnv3dkd --config fertrain/configs/fer2013_student.yaml --epochs "$mnv3_epochs" --teacher "$teacher" &
wait
for name in kd dkd ce mnv3dkd; do
  grep -q '"finished"' "$out/$name/run_status.json" 2>/dev/null || continue
  ( for tta in none ten; do
      python3 -m fertrain evaluate "$out/$name" --manifest "$manifest" --split val --tta "$tta" -j 3 \
          > /dev/null 2>> "$out/$name.log"
    done ) &
done
wait
python3 benchmarks/summarize_runs.py "$out" > /dev/null
