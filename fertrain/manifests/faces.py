"""A manifest row's face box: sources like ExpW and AffectNet keep whole photos on disk, and the
stored box is cropped at load time."""

from __future__ import annotations

import numpy as np


def crop_box(img: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """`img[y:y+h, x:x+w]` for an (x, y, w, h) box; the whole image when box is None."""
    if box is None:
        return img
    x, y, w, h = (int(v) for v in box)
    return img[y : y + h, x : x + w]
