#!/usr/bin/env bash
# Whole-run efficiency of `fertrain teacher` on one GPU (the issue's measure): images trained /
# wall time of the whole command, against the model-only img/s of `bench train` measured right
# before and after it on the same machine (the plain eager step on synthetic tensors). The
# teacher's output is timestamped line by line (timeline.log: start-up, set-up, each epoch).
# Usage: benchmarks/whole_run.sh MANIFEST OUT [EPOCHS=60] [CONFIG=fertrain/configs/fer2013_resnet18.yaml] [FLAGS...]
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-60}; config=${4:-fertrain/configs/fer2013_resnet18.yaml}; shift 4 2>/dev/null || shift $#
mkdir -p "$out"
fer() { python3 -m fertrain "$@"; }
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
size=$(python3 -c "import yaml, sys; print(yaml.safe_load(open(sys.argv[1]))['img_size'])" "$config")
timed bench_before fer bench train -c "$config" --manifest "$manifest" --img-size "$size" -b 256 --steps 200 --warmup 30
t0=$(date +%s.%N)
python3 -u -m fertrain teacher --config "$config" --manifest "$manifest" --epochs "$epochs" --output-dir "$out/teacher" \
    --skip-onnx "$@" 2>&1 | python3 "$(dirname "$0")/timestamp_lines.py" > "$out/timeline.log"
python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)" > "$out/teacher.sec"
timed bench_after fer bench train -c "$config" --manifest "$manifest" --img-size "$size" -b 256 --steps 200 --warmup 30
python3 - "$out" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
model_only = [float(re.search(r"model-only ([\d,]+) img/s", (out / f"bench_{w}.log").read_text())[1].replace(",", ""))
              for w in ("before", "after")]
hist = json.loads((out / "teacher" / "history.json").read_text())
images, wall = sum(r["train_images"] for r in hist), float((out / "teacher.sec").read_text())
train, evals = sum(r["epoch_sec"] for r in hist), sum(r.get("eval_sec", 0) for r in hist)
summary = {"epochs": len(hist), "images": images, "wall_s": wall, "whole_img_s": round(images / wall),
           "model_only_img_s": model_only, "ratio_whole": [round(images / wall / m, 3) for m in model_only],
           "train_sec": round(train, 1), "first_epoch_sec": hist[0]["epoch_sec"], "eval_sec": round(evals, 1),
           "first_eval_sec": hist[0].get("eval_sec"), "other_sec": round(wall - train - evals, 1),
           "median_epoch_img_s": sorted(r["img_per_sec"] for r in hist)[len(hist) // 2],
           "graphed_steps": sum(r.get("graphed_steps", 0) for r in hist),
           "best_val_acc": max(r.get("val_accuracy", 0) for r in hist)}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
