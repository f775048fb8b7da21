#!/usr/bin/env bash
# Whole `fertrain export-softlabels` commands over FER2013's training faces, timed from start to
# exit with a timestamped log: the input preparation compiled (how it ran before 2026-11-22) and
# not (now), on one GPU; then the same export on every GPU of the machine under torchrun.
# Usage: benchmarks/export_run.sh MANIFEST OUT TEACHER_RUN [BATCH=512] [WORKERS=8]
set -uo pipefail
manifest=$1; out=$2; teacher=$3; batch=${4:-512}; workers=${5:-8}
mkdir -p "$out"
# shellcheck source=benchmarks/timed.sh
. "$(dirname "$0")/timed.sh"
args=(export-softlabels --teacher "$teacher" --manifest "$manifest" --split train -b "$batch" -j "$workers")
compiled='import functools, sys, fertrain.ensemble.predictor as p
p.collect_logits = functools.partial(p.collect_logits, fused=True)
from fertrain.cli import main
main(sys.argv[1:])'
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
for round in 1 2; do
  timed "compiled_$round" sh -c "CUDA_VISIBLE_DEVICES=0 python3 -u -c '$compiled' ${args[*]} --out $out/c$round.parquet 2>&1 | python3 $(dirname "$0")/timestamp_lines.py"
  timed "eager_$round" sh -c "CUDA_VISIBLE_DEVICES=0 python3 -u -m fertrain ${args[*]} --out $out/e$round.parquet 2>&1 | python3 $(dirname "$0")/timestamp_lines.py"
  [ "$gpus" -gt 1 ] && timed "torchrun_$round" sh -c "torchrun --standalone --nproc-per-node $gpus -m fertrain ${args[*]} --out $out/t$round.parquet 2>&1 | python3 $(dirname "$0")/timestamp_lines.py"
done
python3 - "$out" <<'PY'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {p.stem: float(p.read_text()) for p in sorted(out.glob("*.sec"))}
digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sorted(out.glob("*.parquet"))}
summary = {"wall_s": rows, "rc": {p.stem: p.read_text().strip() for p in sorted(out.glob("*.rc"))}, "sha256": digests}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
