"""The preprocessing contract shared by training, evaluation, soft-label export, ONNX and predict.

CPU side (workers), all uint8: decode -> crop the face box -> grey replicated to 3 channels
(RGB order) -> optional CLAHE (clip 2.0, tile 8x8, on the L channel) -> resize to img_size.
Device side: /255, normalize with mean/std (and, in training only, batched augmentation).
The spec is saved in the run and in every checkpoint, so every consumer reproduces it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fertrain.errors import InputError
from fertrain.manifests.faces import crop_box


@dataclass(frozen=True)
class PreprocessSpec:
    img_size: int
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tile: int = 8
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    resize: str = "area when shrinking, linear when enlarging (OpenCV)"
    layout: dict = field(default_factory=lambda: {"input": "float32 NCHW", "scale": "x/255 then (x-mean)/std"})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def apply_clahe(rgb: np.ndarray, clip: float, tile: int) -> np.ndarray:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tile, tile)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def prepare_face(img: np.ndarray, box: tuple[int, int, int, int] | None, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HxWx{1,3} (RGB or grey) -> uint8 img_size x img_size x 3 RGB, per the spec."""
    face = crop_box(img, box)
    if face.ndim == 2 or face.shape[2] == 1:
        face = cv2.cvtColor(face.reshape(face.shape[0], face.shape[1]), cv2.COLOR_GRAY2RGB)
    if spec.clahe:
        face = apply_clahe(face, spec.clahe_clip, spec.clahe_tile)
    s = spec.img_size
    if face.shape[0] != s or face.shape[1] != s:
        shrink = face.shape[0] * face.shape[1] > s * s
        face = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(face)


def load_prepared(path: str | Path, box: tuple[int, int, int, int] | None, spec: PreprocessSpec) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(path, "unreadable image", kind="image")
    return prepare_face(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), box, spec)
