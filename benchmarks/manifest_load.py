"""Manifest speed: load time of a 300k-row manifest, and image hashing throughput.

    python benchmarks/manifest_load.py [--rows 300000] [--fer2013 ../shared/datasets/fer2013]

Load target (issue 2): a 300k-row Parquet manifest loads in well under 2 s (stamp check included).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fertrain.labels import CLASS_NAMES, SOFT_COLUMNS
from fertrain.manifests.imageprobe import default_workers, parallel_map, probe_image
from fertrain.manifests.io import check_stamp, load_manifest, normalize_dtypes, write_manifest_file
from fertrain.manifests.schema import COLUMNS


def synthetic_manifest(n: int, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like a real unified manifest: 4 sources, boxes on half, soft labels on a third."""
    rng = np.random.default_rng(seed)
    sources = np.array(["ferplus", "rafdb_basic", "affectnet_full", "expw_hq"])
    src = sources[rng.integers(0, 4, n)]
    label = rng.integers(0, 7, n)
    has_box = rng.random(n) < 0.5
    df = pd.DataFrame({
        "row_id": [f"{s}:images/{i:07d}.jpg" for i, s in enumerate(src)],
        "source": src,
        "split": rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1]),
        "label": label,
        "label_name": np.array(CLASS_NAMES)[label],
        "native_label": np.array(CLASS_NAMES)[label],
        "root": np.char.add("../data/", src),
        "path": [f"images/{i:07d}.jpg" for i in range(n)],
        "width": rng.integers(48, 1024, n),
        "height": rng.integers(48, 1024, n),
        "sha256": [os.urandom(32).hex() for _ in range(n)],
        "dhash": [f"{v:016x}" for v in rng.integers(0, 2**63, n)],
        "box_x": np.where(has_box, rng.integers(0, 100, n), None),
        "box_y": np.where(has_box, rng.integers(0, 100, n), None),
        "box_w": np.where(has_box, rng.integers(40, 300, n), None),
        "box_h": np.where(has_box, rng.integers(40, 300, n), None),
        "landmarks": None,
        "group": None,
        "dup_of": None,
    })  # fmt: skip
    soft = rng.dirichlet(np.ones(7), n).astype(np.float32)
    soft[src != "ferplus"] = np.nan
    for i, col in enumerate(SOFT_COLUMNS):
        df[col] = soft[:, i]
    return normalize_dtypes(df[list(COLUMNS) + list(SOFT_COLUMNS)])


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    data = Path(os.environ.get("FERTRAIN_DATA", "../shared/datasets"))
    ap.add_argument("--fer2013", type=Path, default=data / "fer2013")
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    df = synthetic_manifest(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".parquet", ".csv"):
            path = Path(tmp) / f"m{ext}"
            write_manifest_file(df, path)
            size = path.stat().st_size / 2**20
            stamp = best_of(lambda p=path: check_stamp(p))
            total = best_of(lambda p=path: load_manifest(p))
            print(f"load {args.rows:,} rows {ext:8s} ({size:6.1f} MiB): {total:.3f} s total "
                  f"(stamp check {stamp:.3f} s)")  # fmt: skip
    if args.fer2013.is_dir():
        files = sorted(args.fer2013.rglob("*.jpg"))[:20000]
        items = [(f, None) for f in files]
        for workers in sorted({1, default_workers()}):
            sec = best_of(lambda w=workers: parallel_map(probe_image, items, workers=w, show=False), repeats=2)
            print(f"probe (sha256 + decode + dHash) {len(files):,} FER2013 JPEGs, {workers} processes: "
                  f"{len(files) / sec:,.0f} img/s")  # fmt: skip


if __name__ == "__main__":
    main()
