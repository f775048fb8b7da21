"""Face detectors that work offline on a fresh install, behind one small interface.

    haar            OpenCV's frontal-face Haar cascade, shipped inside the opencv-python-headless
                    4.x wheel (`cv2.data`); eyes for alignment from its eye cascade
    yunet:PATH      OpenCV's YuNet (`cv2.FaceDetectorYN`) with a model file you provide
                    (face_detection_yunet_*.onnx); gives eye landmarks itself
    none            the input already is a face crop (as FER2013 images are)

`make_detector(spec)` builds one from its command-line spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fertrain.errors import ConfigError


@dataclass
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in the image
    score: float
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None  # (left on the image, right on the image)
    extra: dict = field(default_factory=dict)


def cascade(name: str) -> cv2.CascadeClassifier:
    """A Haar cascade from the OpenCV wheel, or a clear error where the wheel has none (OpenCV 5)."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise ConfigError(f"--detector haar needs OpenCV 4.x (this is {cv2.__version__}, which has no "
                          "CascadeClassifier); install opencv-python-headless<5 or use --detector "
                          "yunet:PATH")  # fmt: skip
    path = Path(cv2.data.haarcascades) / name
    if not path.is_file():
        raise ConfigError(f"--detector haar: {path} is missing from the OpenCV wheel; reinstall "
                          "opencv-python-headless<5")  # fmt: skip
    return cv2.CascadeClassifier(str(path))


CASCADE_WINDOW = 24  # pixels: the side of the frontal-face cascade's detection window


class HaarDetector:
    """Frontal faces by Haar cascade on a copy at most `detect_size` pixels on its long side, and
    no larger than needed to see a `min_size` face as the cascade's 24-px window (the cost grows
    with the pixels searched: `min_size=80` on a 640x480 photo searches a 192x144 copy); eyes are
    found inside the upper half of each face, for alignment. Boxes are reported in the original
    image's pixels."""

    name = "haar"

    def __init__(self, min_size: int = 24, scale_factor: float = 1.1, min_neighbors: int = 5,
                 detect_size: int = 320):  # fmt: skip
        self.faces, self.eyes = cascade("haarcascade_frontalface_default.xml"), cascade("haarcascade_eye.xml")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors
        self.detect_size = detect_size

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        # no finer than needed: the smallest face sought (min_size, or what detect_size leaves) shrinks to
        # the cascade's own window, so the search starts at that window
        s = min(1.0, self.detect_size / max(gray.shape), CASCADE_WINDOW / self.min_size)
        small = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else gray
        small = cv2.equalizeHist(small)
        boxes, _, weights = self.faces.detectMultiScale3(small, scaleFactor=self.scale_factor,
                                                          minNeighbors=self.min_neighbors,
                                                          minSize=(CASCADE_WINDOW, CASCADE_WINDOW),
                                                          outputRejectLevels=True)  # fmt: skip
        found = []
        for box, weight in zip(np.asarray(boxes).reshape(-1, 4).tolist(), np.ravel(weights).tolist(), strict=True):
            eyes = self.find_eyes(small, box)
            scaled = tuple(round(v / s) for v in box)
            found.append(Detection(scaled, float(weight),  # type: ignore[arg-type]
                                   None if eyes is None else tuple((x / s, y / s) for x, y in eyes)))  # fmt: skip
        return sorted(found, key=lambda d: -d.box[2] * d.box[3])

    def find_eyes(self, gray: np.ndarray, box: list[int]):
        """Two eye centres in the upper half of the face, left and right on the image, or None."""
        x, y, w, h = box
        upper = gray[y : y + h // 2, x : x + w]
        eyes = self.eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(max(4, w // 10),) * 2)
        if len(eyes) < 2:
            return None
        centres = sorted(((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in eyes[:4]), key=lambda c: c[0])
        left, right = centres[0], centres[-1]
        return (left, right) if right[0] - left[0] > w / 5 else None


class YuNetDetector:
    """OpenCV's YuNet face detector (landmarks included) from a local ONNX file."""

    name = "yunet"

    def __init__(self, model: str | Path, score_threshold: float = 0.6):
        model = Path(model)
        if not model.is_file():
            raise ConfigError(f"--detector yunet:{model}: model file not found (download face_detection_yunet_"
                              "2023mar.onnx from the OpenCV zoo and pass its path)")  # fmt: skip
        self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        found = []
        for f in faces if faces is not None else []:
            x, y, bw, bh = (round(float(v)) for v in f[:4])
            right_eye, left_eye = (float(f[4]), float(f[5])), (float(f[6]), float(f[7]))  # the subject's own sides
            eyes = tuple(sorted((right_eye, left_eye), key=lambda c: c[0]))
            found.append(Detection((x, y, bw, bh), float(f[14]), eyes))  # type: ignore[arg-type]
        return sorted(found, key=lambda d: -d.box[2] * d.box[3])


class WholeImage:
    """No detection: the input is a face crop already."""

    name = "none"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        return [Detection((0, 0, w, h), 1.0)]


def make_detector(spec: str, min_size: int = 24, detect_size: int = 320, detect_scale: float = 1.1):
    """`haar`, `yunet:PATH` or `none`."""
    if spec == "haar":
        return HaarDetector(min_size=min_size, detect_size=detect_size, scale_factor=detect_scale)
    if spec == "none":
        return WholeImage()
    if spec.startswith("yunet:"):
        return YuNetDetector(spec.split(":", 1)[1])
    raise ConfigError(f"--detector {spec!r}; expected haar, yunet:PATH.onnx or none")
