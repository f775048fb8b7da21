#!/usr/bin/env bash
# On a lent GPU machine: does a run stopped by `timeout -s INT` (as the device scripts stop them) end
# cleanly -- checkpoint saved, run_status "interrupted", lock released -- on the GPU paths (data on the
# device, CUDA graph, compiled augmentation, online teacher)? Usage: bash benchmarks/device_sigint_check.sh MANIFEST OUT
# Prints one line per run: exit status (124: timeout's), whether .run.lock was left, run_status, temp files left.
# One H200, 2026-11-23, twice: every run (teacher; without the CUDA graph; without it and the compiled
# augmentation; student of one teacher; student of a four-teacher ensemble with --aug trivial=1) stopped
# at a step checkpoint, "interrupted", lock released. Two 500-epoch students of the same kind stopped this
# way in the same session died at the signal instead, leaving a stale lock (not reproduced since). Not
# timeout's double send: GNU timeout 9.1 signals the child and then its group, but the two SIGINTs reach
# the child as one delivery (set_wakeup_fd saw one SIGINT and one SIGCONT, three tries), and twelve CPU
# runs with a tiny model under `timeout -s INT` all stopped at a step checkpoint (2026-11-23). The likelier
# cause: a device call runs under less than its timeout_s when little device time is left, and is then
# killed outright (no "stopped:" line, a half-written checkpoint .tmp, as seen): keep TIME_LIMIT_S below it.
set -uo pipefail
m=$1; out=$2; mkdir -p "$out"
cfg=fertrain/configs/fer2013_vgg.yaml
for k in 0 1 2 3; do  # four 2-epoch teachers and their ensemble, as the online students' teacher
  python3 -m fertrain teacher --config $cfg --manifest "$m" --epochs 2 --seed $((k + 1)) --output-dir "$out/t$k" \
      --skip-onnx -q > "$out/t$k.log" 2>&1 &
done
wait
python3 -m fertrain ensemble --member "$out/t0:1" --member "$out/t1:1" --member "$out/t2:1" --member "$out/t3:1" \
    --out "$out/ens.json" > "$out/ens.log" 2>&1
python3 -m fertrain calibrate "$out/ens.json" --manifest "$m" --split val --exclude-overlap -j 8 >> "$out/ens.log" 2>&1
start() {  # NAME CMD...: CMD under timeout -s INT 75, in the background
  local name=$1; shift
  timeout -s INT 75 python3 -m fertrain "$@" --output-dir "$out/$name" --skip-onnx -q > "$out/$name.log" 2>&1 &
  pids+=("$name:$!")
}
pids=()
start teacher teacher --config $cfg --manifest "$m" --epochs 200
start nograph teacher --config $cfg --manifest "$m" --epochs 200 --cuda-graph off
start nofuse teacher --config $cfg --manifest "$m" --epochs 200 --no-fused-augment --cuda-graph off
start student student --config fertrain/configs/fer2013_student_vgg_ensemble.yaml --manifest "$m" --epochs 200 \
    --teacher "$out/t0"
start student_ens student --config fertrain/configs/fer2013_student_vgg_ensemble.yaml --manifest "$m" --epochs 200 \
    --teacher "$out/ens.json" --aug trivial=1
for p in "${pids[@]}"; do
  name=${p%%:*}; wait "${p#*:}"; rc=$?
  lock=$([ -f "$out/$name/.run.lock" ] && echo LEFT || echo released)
  status=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$out/$name/run_status.json" 2>&1)
  echo "$name: exit $rc, lock $lock, status $status, temps: $(ls -a "$out/$name" | grep -c '\.tmp$')"
done
