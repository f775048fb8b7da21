"""`Recognizer`: a trained model as a one-line Python API.

    from fertrain import Recognizer
    r = Recognizer("outputs/students/RUN")          # or an ENSEMBLE.json, or model.onnx (+ sidecar)
    faces = r.predict("photo.jpg")                  # [Face(box, score, label, probabilities), ...]
    faces = r.predict_faces([crop1, crop2])         # crops already (as FER2013 images are)

An image is a path or a uint8 array, RGB (HxWx3) or grey (HxW). Each face is detected,
aligned by its eyes, cropped square with the model's margin and prepared with the model's own
preprocessing (a grey model sees colour photos as grey); probabilities are calibrated with
the model's temperature.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fertrain.deploy.align import aligned_crop
from fertrain.deploy.detect import Detection, WholeImage, make_detector
from fertrain.deploy.model import load_model
from fertrain.errors import InputError
from fertrain.manifests.image_files import oversize


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in the image
    score: float  # the detector's confidence (1.0 without a detector)
    label: str
    probabilities: dict[str, float] = field(default_factory=dict)  # calibrated, in the model's class order

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB of an image file, or an InputError naming it."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(path, f"cannot read image: {exc.strerror or exc}", kind="image") from None
    too_big = oversize(memoryview(data)) if data.size else None  # the header is read in place, not copied
    if too_big:
        raise InputError(path, too_big, kind="image")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(path, "not a readable image", kind="image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise InputError("<array>", f"images are uint8 arrays, got {image.dtype}", kind="image")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise InputError("<array>", f"expected HxW (grey) or HxWx3 (RGB), got shape {image.shape}", kind="image")


class Recognizer:
    def __init__(self, model: str | Path, *, detector: str = "haar", align: bool = True, margin: float | None = None,
                 device: str = "cpu", threads: int | None = None, min_face: int = 24,
                 detect_size: int = 320, detect_scale: float = 1.1, tta: str = "none"):  # fmt: skip
        self.model = load_model(model, device=device, threads=threads, tta=tta)
        self.detector = make_detector(detector, min_face, detect_size, detect_scale)
        self.align = align
        self.margin = self.model.spec.face_margin if margin is None else margin
        self.class_names = self.model.class_names
        # detectors keep state between calls (OpenCV's cascades, YuNet's input size): one image at a time
        self.detecting = threading.Lock()

    def faces_of(self, image: np.ndarray) -> tuple[list[Detection], list[np.ndarray]]:
        """Detections in an RGB image and the aligned face crop of each."""
        with self.detecting:
            detections = self.detector.detect(image)
        if isinstance(self.detector, WholeImage):
            return detections, [image]
        return detections, [aligned_crop(image, d, self.margin, self.align) for d in detections]

    def predict(self, image: np.ndarray | str | Path) -> list[Face]:
        return self.predict_many([image])[0]

    def predict_many(self, images: list[np.ndarray | str | Path]) -> list[list[Face]]:
        """Faces of each image; all faces go through the model in one batch."""
        found = [self.faces_of(read_image(im) if isinstance(im, str | Path) else as_rgb(im)) for im in images]
        crops = [c for _, cs in found for c in cs]
        probs = self.model.face_probs(crops) if crops else np.zeros((0, len(self.class_names)))
        out, k = [], 0
        for detections, cs in found:
            out.append([self.face(d.box, d.score, probs[k + i]) for i, d in enumerate(detections)])
            k += len(cs)
        return out

    def predict_faces(self, crops: list[np.ndarray] | np.ndarray) -> list[Face]:
        """Crops that are faces already (no detection, no alignment), e.g. FER2013 images."""
        crops = [as_rgb(c) for c in crops]
        probs = self.model.face_probs(crops) if crops else []
        return [self.face((0, 0, c.shape[1], c.shape[0]), 1.0, p) for c, p in zip(crops, probs, strict=True)]

    def face(self, box, score: float, probs: np.ndarray) -> Face:
        p = {name: float(v) for name, v in zip(self.class_names, probs, strict=True)}
        return Face(tuple(int(v) for v in box), float(score), self.class_names[int(np.argmax(probs))], p)
