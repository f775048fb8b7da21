#!/usr/bin/env bash
# One GPU vs two (torchrun, same global batch) on FER2013 with the shipped resnet18 recipe:
# throughput at 224 and 112 px (EPOCHS_TP short runs, steady-state epoch img/s) and accuracy of
# whole recipe runs of EPOCHS epochs (global batch GLOBAL, default 256: one GPU x 256, two GPUs x 128).
# Usage: [GLOBAL=256] [LR=] benchmarks/multi_gpu.sh MANIFEST OUT [EPOCHS=40 (0: no recipe runs)] [EPOCHS_TP=3]
#        [SIZES="224 112"] [TAG=""] [EXTRA FLAGS for the throughput runs, e.g. --compile]
# LR: the recipe runs' --lr (e.g. 0.2 for GLOBAL=512: the recipe's 0.1 at 256 scaled linearly).
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-40}; epochs_tp=${4:-3}; sizes=${5:-224 112}; tag=${6:-}; shift 6 2>/dev/null || shift $#
mkdir -p "$out"
cfg=fertrain/configs/fer2013_resnet18.yaml
global=${GLOBAL:-256}
one() { CUDA_VISIBLE_DEVICES=0 python3 -m fertrain teacher --config "$cfg" --manifest "$manifest" -b "$global" "$@"; }
two() { torchrun --standalone --nproc-per-node 2 -m fertrain teacher --config "$cfg" --manifest "$manifest" \
        -b $((global / 2)) "$@"; }
lr=(); [ -n "${LR:-}" ] && lr=(--lr "$LR")
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
for size in $sizes; do
  for n in one two; do
    timed "tp${size}${tag}_$n" $n --img-size "$size" --epochs "$epochs_tp" --output-dir "$out/tp${size}${tag}_$n" \
        --skip-onnx -q "$@"
  done
done
for n in one two; do
  [ "$epochs" -gt 0 ] && timed "recipe_$n" $n --epochs "$epochs" --output-dir "$out/recipe_$n" --skip-onnx -q "${lr[@]}"
done
python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for d in sorted(p for p in out.iterdir() if (p / "history.json").is_file()):
    h = json.loads((d / "history.json").read_text())
    steady = [r["img_per_sec"] for r in h[1:]] or [h[0]["img_per_sec"]]
    best = max(h, key=lambda r: r.get("val_accuracy", 0))
    wall = float((out / f"{d.name}.sec").read_text())
    rows[d.name] = {"epochs": len(h), "steady_img_s": round(statistics.median(steady)), "wall_s": wall,
                    "whole_img_s": round(sum(r["train_images"] for r in h) / wall),
                    "train_sec": round(sum(r["epoch_sec"] for r in h), 1),
                    "eval_sec": round(sum(r.get("eval_sec", 0) for r in h), 1),
                    "best_val_acc": best.get("val_accuracy"), "best_epoch": best["epoch"],
                    "last_val_acc": h[-1].get("val_accuracy")}
for name in [k[: -len("_one")] for k in rows if k.startswith("tp") and k.endswith("_one")]:
    a, b = rows[f"{name}_one"], rows.get(f"{name}_two")
    if b:
        rows[f"speedup_{name}"] = round(b["steady_img_s"] / a["steady_img_s"], 3)
(out / "summary.json").write_text(json.dumps(rows, indent=1))
print(json.dumps(rows, indent=1))
PY
