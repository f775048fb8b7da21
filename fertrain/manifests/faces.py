"""Load a manifest row's face: decode, then crop the stored box (sources like ExpW and
AffectNet keep whole photos on disk and are cropped at load time)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fertrain.errors import InputError


def crop_box(img: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """`img[y:y+h, x:x+w]` for an (x, y, w, h) box; the whole image when box is None."""
    if box is None:
        return img
    x, y, w, h = (int(v) for v in box)
    return img[y : y + h, x : x + w]


def row_box(row) -> tuple[int, int, int, int] | None:
    """The (x, y, w, h) box of a manifest row (a pandas Series/namedtuple), or None."""
    vals = [getattr(row, c) for c in ("box_x", "box_y", "box_w", "box_h")]
    if any(pd.isna(v) for v in vals):
        return None
    x, y, w, h = (int(v) for v in vals)
    return x, y, w, h


def load_face(path: str | Path, box: tuple[int, int, int, int] | None = None, *, color: bool = True) -> np.ndarray:
    """uint8 face crop, RGB (HxWx3) when `color`, else grayscale (HxW)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise InputError(path, "unreadable image", kind="image")
    if color:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return crop_box(img, box)
