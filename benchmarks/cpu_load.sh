#!/usr/bin/env bash
# CPU training speed alone and next to two busy processes, with the engine's thread policy
# (intra-op threads = cores - workers) and with torch's default (OMP_NUM_THREADS = cores).
# Usage: benchmarks/cpu_load.sh DEMO_MANIFEST   (e.g. outputs/demo/manifests/demo.parquet)
set -euo pipefail
manifest=${1:?demo manifest}
cores=$(nproc)
bench() {
  .venv/bin/fertrain bench train --device cpu --manifest "$manifest" --backbone resnet10t --img-size 48 -b 32 -j 1 \
    --steps 15 --warmup 3 --no-amp --no-channels-last 2>&1 | tail -1
}
load() { for _ in 1 2; do python3 -c "while True: pass" & done; }
echo "alone, engine threads:   $(bench)"
echo "alone, torch default:    $(OMP_NUM_THREADS=$cores bench)"
load
trap 'kill $(jobs -p) 2>/dev/null' EXIT
echo "2 busy, engine threads:  $(bench)"
echo "2 busy, torch default:   $(OMP_NUM_THREADS=$cores bench)"
