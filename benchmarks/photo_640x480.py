"""Make a 640x480 test photo with one face from an ExpW image (the latency benchmark's input).

    python benchmarks/photo_640x480.py ../shared/datasets/expw_mini /tmp/photo.jpg

Picks the first ExpW photo with exactly one labelled face of at least 80 px, scales it to fit
640x480 and pads the rest by replicating the border, so the face stays undistorted.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import cv2


def main(expw: Path, out: Path) -> None:
    lines = [line.split() for line in (expw / "label" / "label.lst").read_text().splitlines()]
    faces = Counter(parts[0] for parts in lines)
    for name, _fid, top, left, right, bottom, *_ in lines:
        if faces[name] == 1 and int(right) - int(left) >= 80:
            img = cv2.imread(str(expw / "image" / "origin" / name))
            s = min(640 / img.shape[1], 480 / img.shape[0])
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            bottom_pad, right_pad = 480 - img.shape[0], 640 - img.shape[1]
            img = cv2.copyMakeBorder(img, 0, bottom_pad, 0, right_pad, cv2.BORDER_REPLICATE)
            cv2.imwrite(str(out), img)
            print(f"{out}: {name} scaled by {s:.2f}, face box {int(left) * s:.0f},{int(top) * s:.0f} "
                  f"{(int(right) - int(left)) * s:.0f}x{(int(bottom) - int(top)) * s:.0f}")
            return
    raise SystemExit("no single-face photo found")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
