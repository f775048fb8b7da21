"""From a detection to the face crop a model sees: rotate so the eyes are level, then a square
crop around the face grown by the margin, in one affine warp (edges replicated)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fertrain.deploy.detect import Detection

MAX_SIDE = 512  # the crop is made at most this large; preprocessing shrinks it to the model's size anyway


def eye_angle(eyes) -> float:
    """Degrees to rotate by so that the line through both eyes is horizontal."""
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def aligned_crop(image: np.ndarray, det: Detection, margin: float, align: bool = True) -> np.ndarray:
    """The square face crop of `det`: side max(w, h) x (1 + 2 x margin), centred on the box (and
    rotated about that centre so the eyes are level, when `align` and the eyes are known)."""
    x, y, w, h = det.box
    cx, cy = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    out = round(min(side, MAX_SIDE))
    angle = eye_angle(det.eyes) if align and det.eyes is not None else 0.0
    scale = out / side
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += out / 2 - cx
    m[1, 2] += out / 2 - cy
    return cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
