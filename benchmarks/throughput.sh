#!/usr/bin/env bash
# Whole-run throughput on one GPU (issue: throughput where FER models train): `bench train` at
# 112 px with the data on the device and through loader workers, then whole commands timed from
# start to exit: a resnet18 teacher with the shipped recipe config for EPOCHS epochs (per-epoch
# validation, EMA), export-softlabels of its training faces, and a mobilenetv3_large_100 student
# on those soft labels for STUDENT_EPOCHS. Images trained / whole wall time is compared with
# the model-only img/s of the same step code.
# Usage: benchmarks/throughput.sh MANIFEST OUT [EPOCHS=60] [STUDENT_EPOCHS=20]
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-60}; student_epochs=${4:-20}
mkdir -p "$out"
fer() { python3 -m fertrain "$@"; }
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
for mode in on off; do
  timed "bench_rn18_112_$mode" fer bench train --manifest "$manifest" --backbone resnet18 --img-size 112 -b 256 \
      --steps 200 --warmup 30 -j 8 --data-on-device "$mode"
done
timed bench_mnv3_112 fer bench train --manifest "$manifest" --backbone mobilenetv3_large_100 --img-size 112 \
    -b 256 --steps 200 --warmup 30 -j 8 --data-on-device on
timed teacher fer teacher --config fertrain/configs/fer2013_resnet18.yaml --manifest "$manifest" --epochs "$epochs" \
    --output-dir "$out/teacher" --skip-onnx -q
timed softlabels fer export-softlabels --teacher "$out/teacher" --manifest "$manifest" --split train \
    --out "$out/softlabels.parquet" -b 1024 -j 8 -q
timed student fer student --config fertrain/configs/fer2013_student.yaml --manifest "$manifest" \
    --softlabels "$out/softlabels.parquet" --epochs "$student_epochs" --output-dir "$out/student" --skip-onnx -q
python3 - "$out" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
for log in sorted(out.glob("bench_*.log")):
    m = re.search(r"model-only ([\d,]+) img/s, end-to-end ([\d,]+) img/s, ratio ([\d.]+)", log.read_text())
    if m:
        summary[log.stem] = {"model_only": float(m[1].replace(",", "")), "end_to_end": float(m[2].replace(",", "")),
                             "ratio": float(m[3])}
for run in ("teacher", "student"):
    hist_path = out / run / "history.json"
    if not hist_path.is_file():
        continue
    hist = json.loads(hist_path.read_text())
    images = sum(r["train_images"] for r in hist)
    wall = float((out / f"{run}.sec").read_text())
    best = max(hist, key=lambda r: r.get("val_accuracy", 0))
    summary[run] = {"epochs": len(hist), "images": images, "wall_s": wall, "img_per_s_whole": round(images / wall),
                    "train_sec": round(sum(r["epoch_sec"] for r in hist), 1),
                    "median_epoch_img_s": sorted(r["img_per_sec"] for r in hist)[len(hist) // 2],
                    "best_val_acc": best.get("val_accuracy"), "rc": (out / f"{run}.rc").read_text().strip()}
summary["softlabels_s"] = float((out / "softlabels.sec").read_text())
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
