#!/usr/bin/env bash
# FER2013 students distilled online from a calibrated teacher run or ensemble JSON, side by side on
# the visible GPUs (benchmarks/fer2013_runs.sh with COMMAND=student): fer_vgg_s at 48 px with KD,
# with DKD and with CE only (no teacher; same config, epochs and seed), and mobilenetv3_large_100 at
# 112 px with DKD (fertrain/configs/fer2013_student.yaml). Re-running resumes unfinished students;
# finished ones are evaluated on PublicTest single-view and with ten-crop TTA.
# Usage: benchmarks/fer2013_online_students.sh MANIFEST TEACHER OUT [EPOCHS=100] [MNV3_EPOCHS=70] [TIME_LIMIT_S]
set -uo pipefail
manifest=$1; teacher=$2; out=$3; epochs=${4:-100}; mnv3_epochs=${5:-70}; limit=${6:-100000}
runs="$(dirname "$0")/fer2013_runs.sh"
export COMMAND=student
CONFIG=fertrain/configs/fer2013_student_vgg.yaml bash "$runs" "$manifest" "$out" "$epochs" "$limit" \
    kd="--teacher $teacher" dkd="--loss dkd --teacher $teacher" ce="--loss ce" &
CONFIG=fertrain/configs/fer2013_student.yaml bash "$runs" "$manifest" "$out" "$mnv3_epochs" "$limit" \
    mnv3dkd="--teacher $teacher" &
wait
