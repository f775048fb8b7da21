#!/usr/bin/env bash
# On a lent GPU machine: unpack the FER2013 image folders carried in device_data/ (made here with
# `python benchmarks/pack_images.py pack ../shared/datasets/fer2013 device_data/fer2013 && gzip -1
# device_data/fer2013.npy`) and build their manifest. Prints the manifest path.
# Usage: bash benchmarks/device_fer2013.sh [DEST=/tmp/fer2013]
set -euo pipefail
dest=${1:-/tmp/fer2013}
manifest=$dest.parquet
if [ ! -f "$manifest" ]; then
  [ -f device_data/fer2013.npy ] || gunzip -kf device_data/fer2013.npy.gz
  python3 benchmarks/pack_images.py unpack device_data/fer2013 "$dest" >&2
  PYTHONPATH=. python3 -m fertrain manifest build --source "fer2013=$dest" --out "$manifest" -q >&2
fi
echo "$manifest"
