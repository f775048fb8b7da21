"""Pack an image tree into one file (and back), to carry datasets to a remote GPU machine.

    python benchmarks/pack_images.py pack ../shared/datasets/fer2013 device_data/fer2013
    python benchmarks/pack_images.py unpack device_data/fer2013 /tmp/fer2013

`pack` writes DEST.npy (all file bytes concatenated, uint8) and DEST.tsv (relative path,
offset, length); thousands of small files become two, so the copy is fast and small on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def pack(src: Path, dest: Path) -> None:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.save(f"{dest}.npy", np.frombuffer(b"".join(blobs), dtype=np.uint8))
    lines = [f"{p.relative_to(src).as_posix()}\t{o}\t{len(b)}" for p, o, b in zip(files, offsets, blobs, strict=False)]
    Path(f"{dest}.tsv").write_text("\n".join(lines) + "\n")
    print(f"packed {len(files):,} files, {offsets[-1] / 2**20:.1f} MiB -> {dest}.npy/.tsv")


def unpack(src: Path, dest: Path) -> None:
    data = np.load(f"{src}.npy", mmap_mode="r")
    n = 0
    for line in Path(f"{src}.tsv").read_text().splitlines():
        rel, off, length = line.split("\t")
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data[int(off) : int(off) + int(length)].tobytes())
        n += 1
    print(f"unpacked {n:,} files -> {dest}")


if __name__ == "__main__":
    cmd, a, b = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"pack": pack, "unpack": unpack}[cmd](a, b)
