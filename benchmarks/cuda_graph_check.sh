#!/usr/bin/env bash
# On a GPU: the training step replayed as a CUDA graph (--cuda-graph) against the plain eager step.
# Two short teacher runs of the shipped resnet18 recipe (2 epochs, -q), one per mode, then their
# histories side by side (train loss, val accuracy/NLL, img/s, graphed steps), then `bench train`
# at 112 px in both modes.
# Usage: benchmarks/cuda_graph_check.sh MANIFEST OUT [EPOCHS=2] [CONFIG=fertrain/configs/fer2013_resnet18.yaml]
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-2}; config=${4:-fertrain/configs/fer2013_resnet18.yaml}
mkdir -p "$out"
fer() { python3 -m fertrain "$@"; }
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
for mode in off on; do
  timed "teacher_$mode" fer teacher --config "$config" --manifest "$manifest" --epochs "$epochs" \
      --output-dir "$out/teacher_$mode" --skip-onnx --cuda-graph "$mode" -q
done
python3 "$(dirname "$0")/compare_histories.py" "$out" teacher_off teacher_on
for mode in off on; do
  timed "bench_rn18_112_$mode" fer bench train -c "$config" --manifest "$manifest" --img-size 112 -b 256 \
      --steps 200 --warmup 30 -j 8 --cuda-graph "$mode"
done
grep -h "ratio" "$out"/bench_*.log
