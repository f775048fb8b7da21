#!/usr/bin/env bash
# CPU training speed alone and next to two busy processes, for four thread settings of the main
# process (docs/benchmarks.md#cpu-threads). Usage: benchmarks/cpu_load.sh DEMO_MANIFEST
# (e.g. outputs/demo/manifests/demo.parquet after `make demo`).
set -euo pipefail
manifest=${1:?demo manifest}
cores=$(nproc)
bench() {
  .venv/bin/fertrain bench train --device cpu --manifest "$manifest" --backbone resnet10t --img-size 48 -b 32 -j 1 \
    --steps 40 --warmup 5 --no-amp --no-channels-last 2>&1 | tail -1
}
settings() {
  echo "  torch default (spinning):  $(OMP_NUM_THREADS=$cores OMP_WAIT_POLICY=ACTIVE bench)"
  echo "  cores - workers:           $(OMP_WAIT_POLICY=ACTIVE bench)"
  echo "  all cores, passive (fertrain's): $(bench)"
  echo "  cores - workers, passive:  $(OMP_NUM_THREADS=$((cores > 1 ? cores - 1 : 1)) bench)"
}
echo "alone:"; settings
for _ in 1 2; do python3 -c "while True: pass" & done
trap 'kill $(jobs -p) 2>/dev/null' EXIT
echo "next to 2 busy processes:"; settings
