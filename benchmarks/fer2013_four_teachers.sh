#!/usr/bin/env bash
# FER2013 on a 4-GPU machine: four resnet18 teachers of the shipped recipe at once (one per GPU:
# the recipe, --mixup 0, --seed 2, --img-size 64), then each with ten-crop TTA on PublicTest and
# ensembles of them (equal weights, calibrated on PublicTest without its training duplicates).
# Re-running it resumes unfinished runs (a run directory resumes from checkpoint_last.pt).
# Usage: benchmarks/fer2013_four_teachers.sh MANIFEST OUT [EPOCHS=300] [TRAIN_LIMIT_S=100000] [post]
# Writes OUT/{recipe,mixup0,seed2,px64}/, OUT/ens_*.json and OUT/summary.json ("post": evaluate too).
set -uo pipefail
manifest=$1; out=$2; epochs=${3:-300}; limit=${4:-100000}; post=${5:-}
cfg=fertrain/configs/fer2013_resnet18.yaml
fer() { python3 -m fertrain "$@"; }
declare -A flags=([recipe]="" [mixup0]="--mixup 0" [seed2]="--seed 2" [px64]="--img-size 64")
gpu=0
for run in recipe mixup0 seed2 px64; do
  # shellcheck disable=SC2086  # the flags are words
  CUDA_VISIBLE_DEVICES=$gpu timeout -s INT "$limit" python3 -m fertrain teacher --config "$cfg" \
      --manifest "$manifest" --epochs "$epochs" ${flags[$run]} --output-dir "$out/$run" --skip-onnx -q \
      >> "$out/$run.log" 2>&1 &
  gpu=$((gpu + 1))
done
wait
[ "$post" = post ] || exit 0
gpu=0
for run in recipe mixup0 seed2 px64; do
  ( for tta in none ten; do
      CUDA_VISIBLE_DEVICES=$gpu python3 -m fertrain evaluate "$out/$run" --manifest "$manifest" --split val \
          --tta "$tta" -j 4 > /dev/null 2>> "$out/$run.log"
    done ) &
  gpu=$((gpu + 1))
done
wait
ensemble() {  # NAME RUN...
  local name=$1; shift
  local members=(); for r in "$@"; do members+=(--member "$out/$r:1"); done
  fer ensemble "${members[@]}" --out "$out/ens_$name.json" >> "$out/ens.log" 2>&1
  fer calibrate "$out/ens_$name.json" --manifest "$manifest" --split val --exclude-overlap -j 8 >> "$out/ens.log" 2>&1
  for tta in none ten; do
    fer evaluate "$out/ens_$name.json" --manifest "$manifest" --split val --tta "$tta" -j 8 > /dev/null 2>> "$out/ens.log"
  done
}
ensemble two recipe mixup0 &
ensemble three recipe mixup0 seed2 &
ensemble four recipe mixup0 seed2 px64 &
wait
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for d in sorted(p for p in out.iterdir() if p.is_dir()):
    hist = json.loads((d / "history.json").read_text()) if (d / "history.json").is_file() else []
    evals = [r for r in hist if "val_accuracy" in r]
    if evals:
        best = max(evals, key=lambda r: r["val_macro_f1"])
        rows[d.name] = {"epochs_done": len(hist), "wall_min": round(hist[-1]["total_sec"] / 60, 2),
                        "best_epoch": best["epoch"], "best_val_acc": best["val_accuracy"],
                        "best_val_macro_f1": best["val_macro_f1"], "best_weights": best.get("selected_weights")}
for ev in sorted(out.rglob("*evaluation_*val*.json")):
    e = json.loads(ev.read_text())
    name = ev.parent.name if ev.parent != out else ev.name.split(".")[0]
    rows.setdefault(name, {})[f"tta_{e['tta']}"] = {
        "acc": e["accuracy"], "macro_f1": e["macro_f1"], "nll_scaled": e["calibration"]["scaled"].get("nll"),
        "ece_scaled": e["calibration"]["scaled"]["ece"],
        "recall": {k: round(v["recall"], 3) for k, v in e.get("per_class", {}).items()}}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
print(json.dumps(rows, indent=1))
PY
