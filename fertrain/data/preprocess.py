"""The preprocessing contract shared by training, evaluation, soft-label export, ONNX and predict.

CPU side (workers), all uint8: decode -> crop the face box -> colour mode: `grey` models (trained
on grey data such as FER2013) see every face as grey, a colour photo included; grey is
replicated to 3 channels (RGB order) -> optional CLAHE (clip 2.0, tile 8x8, on the L channel) ->
if the face is larger than img_size, shrink it to img_size x img_size (OpenCV INTER_AREA);
smaller faces stay native. `face_margin` is the margin of the square crop around a detected
face at deployment (the detector's box grown by it on each side).
Device side: bilinear resample to img_size x img_size (grid_sample, half-pixel centres; in
training this one resample also does the random crop and flip), /255, normalize.
Enlarging on the device keeps the host -> device bytes at the faces' native size (a 48x48
FER2013 face is 1/21 of its 224x224 version).
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
    color: str = "rgb"  # rgb | grey
    face_margin: float = 0.3
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    resize: str = "CPU: INTER_AREA to img_size when larger; device: bilinear grid_sample (align_corners=False)"
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
    """uint8 HxWx{1,3} (RGB or grey) -> uint8 hxwx3 RGB with h, w <= img_size, per the spec."""
    face = crop_box(img, box)
    if face.ndim == 3 and face.shape[2] == 3 and spec.color == "grey":
        face = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    s = spec.img_size
    if face.ndim == 3 and face.shape[2] == 1:
        face = face.reshape(face.shape[0], face.shape[1])
    if face.ndim == 2 and not spec.clahe and max(face.shape) > s:
        # a grey face shrinks as one channel before it is replicated: the same pixels, a third of the work
        face = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
    if face.ndim == 2:
        face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
    if spec.clahe:
        face = apply_clahe(face, spec.clahe_clip, spec.clahe_tile)
    if max(face.shape[0], face.shape[1]) > s:
        face = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(face)


def load_prepared(path: str | Path, box: tuple[int, int, int, int] | None, spec: PreprocessSpec) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(path, "unreadable image", kind="image")
    return prepare_face(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), box, spec)


COLOR_MODES = ("rgb", "grey")
TTA_MODES = ("none", "flip", "five", "ten")  # test-time augmentation of evaluation and serving
TTA_CROP = 0.875  # side of each multi-crop view, as a fraction of the face (the training crops' typical size)


def color_sample(n: int, sample: int = 256) -> slice:
    """At most `sample` positions spread over `n` (a colour source next to a grey one is seen)."""
    step = max(1, n // sample)
    return slice(0, step * sample, step)


def color_mode_of(paths: list) -> str:
    """`grey` when every sampled image (`color_sample`) is single-channel (or has three equal
    channels), else `rgb`. Callers holding rows can sample them before resolving their paths."""
    for path in paths[color_sample(len(paths))]:
        img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim == 2 or img.shape[2] < 3:
            continue
        if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
            return "rgb"
    return "grey"
