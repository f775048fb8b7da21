"""Per-core speed of the CPU side of the data path (decode excluded): `prepare_face` on real faces.

    python benchmarks/prepare_face.py ../shared/datasets/fer2013 [--n 5000] [--img-size 112] [--clahe]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from fertrain.data.preprocess import PreprocessSpec, prepare_face


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", help="An image-folder dataset (e.g. FER2013's train/<class>/*.png).")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--clahe", action="store_true")
    a = ap.parse_args()
    cv2.setNumThreads(1)  # as in the loader workers
    paths = sorted(p for p in Path(a.root).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[: a.n]
    imgs = [cv2.cvtColor(cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]
    spec = PreprocessSpec(img_size=a.img_size, clahe=a.clahe)
    for _ in range(2):  # the second pass is reported
        t = time.perf_counter()
        for im in imgs:
            prepare_face(im, None, spec)
        dt = time.perf_counter() - t
    rate = len(imgs) / dt
    print(f"prepare_face (img {a.img_size}, clahe {a.clahe}), {len(imgs)} faces: {rate:,.0f} faces/s per core")


if __name__ == "__main__":
    main()
