"""Manifest row schema: one row per face.

Adapters produce `Candidate`s (what the native layout says about a face); the build step
adds what only the image can tell (sha256, size, perceptual hash) and the split, then
turns them into a DataFrame with `COLUMNS` in this order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "val", "test")

# Column order of every manifest. `root` is stored relative to the manifest's directory
# when possible, so a dataset tree and its manifests can move together.
COLUMNS: tuple[str, ...] = (
    "row_id",
    "source",
    "split",
    "label",
    "label_name",
    "native_label",
    "root",
    "path",
    "width",
    "height",
    "sha256",
    "dhash",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "landmarks",
    "group",
    "dup_of",
)
BOX_COLUMNS: tuple[str, ...] = ("box_x", "box_y", "box_w", "box_h")


@dataclass(slots=True)
class Candidate:
    """A face as the native layout describes it, before the image is read.

    `origin` is (file, line) of the record that produced it, so every later error
    (unreadable image, box outside the image, duplicate name) can point at the source line.
    """

    root: Path
    path: str
    label: int
    native_label: str
    origin: tuple[str, int | None]
    split: str | None = None
    group: str | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, w, h in pixels of the full image
    landmarks: str | None = None  # space-separated x y pairs
    soft: tuple[float, ...] | None = None  # canonical-order probabilities, sums to 1
    face_id: str | None = None  # distinguishes several faces in one image
    clip_box: bool = False  # a box reaching past the image edge is clipped (counted) instead of refused

    def row_id(self, source: str) -> str:
        suffix = f"#{self.face_id}" if self.face_id is not None else ""
        return f"{source}:{self.path}{suffix}"
