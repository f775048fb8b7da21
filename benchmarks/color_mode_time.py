"""Start-up cost of detecting a training split's colour mode: resolving and checking every training
path vs only the sampled rows' (what the trainer does). Usage: python benchmarks/color_mode_time.py MANIFEST"""

import sys
import time
from pathlib import Path

from fertrain.data.preprocess import color_mode_of, color_sample
from fertrain.manifests.io import load_manifest

m = load_manifest(Path(sys.argv[1]))
rows = m.df[m.df["split"] == "train"].reset_index(drop=True)
def fastest(f, n=3):
    best = 1e9
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best
full = fastest(lambda: color_mode_of(m.image_paths(rows)))
sampled = fastest(lambda: color_mode_of(m.image_paths(rows.iloc[color_sample(len(rows))])))
print(f"train rows {len(rows)}: colour mode from all paths {full:.3f} s, from the sampled rows' paths {sampled:.3f} s")
