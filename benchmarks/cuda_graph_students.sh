#!/usr/bin/env bash
# On a GPU: students with their step replayed as a CUDA graph (--cuda-graph) against the eager
# step. A short fer_vgg teacher (TEACHER_EPOCHS), its soft labels, then two pairs of student runs
# (--cuda-graph off / on, STUDENT_EPOCHS each): online KD from the teacher with the shipped
# fer2013_student_vgg.yaml (AdamW), offline DKD with fer2013_student.yaml (warm-up 1 epoch); their
# histories side by side.
# Usage: benchmarks/cuda_graph_students.sh MANIFEST OUT [TEACHER_EPOCHS=8] [STUDENT_EPOCHS=3]
set -uo pipefail
manifest=$1; out=$2; teacher_epochs=${3:-8}; student_epochs=${4:-3}
mkdir -p "$out"
fer() { python3 -m fertrain "$@"; }
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
timed teacher fer teacher --config fertrain/configs/fer2013_vgg.yaml --manifest "$manifest" --epochs "$teacher_epochs" \
    --output-dir "$out/teacher" --skip-onnx -q
timed softlabels fer export-softlabels --teacher "$out/teacher" --manifest "$manifest" --split train \
    --out "$out/softlabels.parquet" -b 1024 -q
for mode in off on; do
  timed "online_$mode" fer student --config fertrain/configs/fer2013_student_vgg.yaml --manifest "$manifest" \
      --teacher "$out/teacher" --epochs "$student_epochs" --output-dir "$out/online_$mode" --skip-onnx \
      --cuda-graph "$mode" -q
  timed "offline_$mode" fer student --config fertrain/configs/fer2013_student.yaml --manifest "$manifest" \
      --softlabels "$out/softlabels.parquet" --epochs "$student_epochs" --output-dir "$out/offline_$mode" \
      --skip-onnx --cuda-graph "$mode" --loss-opt warmup=1 -q  # DKD warm-up steps run eagerly: keep it short
done
python3 "$(dirname "$0")/compare_histories.py" "$out" online_off online_on offline_off offline_on
