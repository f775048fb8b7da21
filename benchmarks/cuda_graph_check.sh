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
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
keys = ("train_loss", "val_accuracy", "val_nll", "ema_val_accuracy", "img_per_sec", "graphed_steps")
for mode in ("off", "on"):
    hist = out / f"teacher_{mode}" / "history.json"
    rows = json.loads(hist.read_text()) if hist.is_file() else []
    print(mode, "wall", (out / f"teacher_{mode}.sec").read_text().strip(), "s")
    for r in rows:
        print("  ", {k: r.get(k) for k in keys})
PY
for mode in off on; do
  timed "bench_rn18_112_$mode" fer bench train -c "$config" --manifest "$manifest" --img-size 112 -b 256 \
      --steps 200 --warmup 30 -j 8 --cuda-graph "$mode"
done
grep -h "ratio" "$out"/bench_*.log
