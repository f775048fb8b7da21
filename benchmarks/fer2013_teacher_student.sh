#!/usr/bin/env bash
# FER2013 on one GPU: resnet18 teacher -> soft labels -> DKD and CE students -> inference img/s.
# Usage: benchmarks/fer2013_teacher_student.sh MANIFEST OUT [TEACHER_EPOCHS] [STUDENT_EPOCHS] [STUDENT]
# Writes OUT/summary.json (teacher vs students: val/test accuracy, macro-F1, parameters, img/s).
set -euo pipefail
manifest=$1; out=$2; te=${3:-40}; se=${4:-40}; student=${5:-mobilenetv3_large_100}
fer() { python3 -m fertrain "$@"; }
common=(--manifest "$manifest" --img-size 112 -b 256 -j 8 --amp --channels-last -q)
fer teacher --stage A --backbone resnet18 --head linear --epochs "$te" --lr 2e-3 "${common[@]}" \
    --output-dir "$out/teacher" --skip-onnx
fer export-softlabels --teacher "$out/teacher" --manifest "$manifest" --split train --out "$out/softlabels.parquet" \
    -b 512 -j 8 -q
for loss in dkd ce; do
  extra=(); [ "$loss" = dkd ] && extra=(--softlabels "$out/softlabels.parquet")
  fer student --backbone "$student" --loss "$loss" --epochs "$se" --lr 2e-3 "${common[@]}" "${extra[@]}" \
      --output-dir "$out/student_$loss" --skip-onnx
done
for b in resnet18 "$student"; do
  fer bench export --manifest "$manifest" --backbone "$b" --img-size 112 -b 512 -j 8 --max-images 28000 \
      > "$out/bench_$b.txt"
done
python3 - "$out" "$student" <<'PY'
import json, sys
from pathlib import Path
out, student = Path(sys.argv[1]), sys.argv[2]
def bench(name):
    text = (out / f"bench_{name}.txt").read_text()
    return json.loads(text[text.index("{"): text.rindex("}") + 1])
hist = json.loads((out / "teacher" / "history.json").read_text())
best = max(hist, key=lambda r: r.get("val_macro_f1", -1))
from fertrain.models import build_model
params = sum(p.numel() for p in build_model("resnet18", head="linear").parameters())
rows = {"teacher_resnet18": {"best_val_acc": best["val_accuracy"], "best_val_macro_f1": best["val_macro_f1"],
                             "params": params, "train_img_s": hist[-1]["img_per_sec"], "inference": bench("resnet18")}}
for loss in ("dkd", "ce"):
    r = json.loads((out / f"student_{loss}" / "results.json").read_text())
    rows[f"student_{student}_{loss}"] = {
        "best_val_acc": r["best_val"]["accuracy"], "best_val_macro_f1": r["best_val"]["macro_f1"],
        "test_acc": (r["test"] or {}).get("accuracy"), "test_macro_f1": (r["test"] or {}).get("macro_f1"),
        "params": r["params"]["student"], "train_img_s": r["history"][-1]["img_per_sec"], "inference": bench(student)}
(out / "summary.json").write_text(json.dumps(rows, indent=2))
print(json.dumps(rows, indent=2))
PY
