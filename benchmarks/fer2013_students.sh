#!/usr/bin/env bash
# FER2013 students on one GPU: calibrate a teacher run, export its soft labels for the training
# faces, then two students side by side with fertrain/configs/fer2013_student.yaml: DKD from the
# soft labels and the same student with CE only (same epochs, recipe and seed).
# Usage: benchmarks/fer2013_students.sh MANIFEST TEACHER_RUN OUT [EPOCHS] [TIME_LIMIT_S]
set -uo pipefail
manifest=$1; teacher=$2; out=$3; epochs=${4:-70}; limit=${5:-100000}
fer() { python3 -m fertrain "$@"; }
mkdir -p "$out"
fer calibrate "$teacher" --manifest "$manifest" --split val --exclude-overlap -j 8 > "$out/teacher.log" 2>&1
fer export-softlabels --teacher "$teacher" --manifest "$manifest" --split train --out "$out/softlabels.parquet" \
    -b 512 -j 8 -q >> "$out/teacher.log" 2>&1
cfg=fertrain/configs/fer2013_student.yaml
timeout -s INT "$limit" python3 -m fertrain student --config "$cfg" --manifest "$manifest" --epochs "$epochs" \
    --softlabels "$out/softlabels.parquet" --output-dir "$out/dkd" --skip-onnx -q > "$out/dkd.log" 2>&1 &
timeout -s INT "$limit" python3 -m fertrain student --config "$cfg" --manifest "$manifest" --epochs "$epochs" \
    --loss ce --output-dir "$out/ce" --skip-onnx -q > "$out/ce.log" 2>&1 &
wait
