"""`fertrain bench detect MANIFEST`: how well a face detector finds the labelled faces of uncropped
photos (ExpW, AffectNet: manifests that store a face box per row), how long it takes per photo,
and, with `--model`, what the model predicts on the detected, aligned faces next to what it
predicts on the labelled boxes.

A labelled face is found when a detection overlaps its box with IoU >= `min_iou` (each
detection matched once, best overlap first). Recall is given for every face and for faces of at
least `large` pixels (the faces a camera sees), since Haar misses most small faces."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fertrain.deploy.align import aligned_crop
from fertrain.deploy.detect import Detection, make_detector
from fertrain.deploy.model import load_model
from fertrain.deploy.recognizer import read_image
from fertrain.errors import ConfigError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.manifests.faces import crop_box

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass
class DetectRow:
    detect_size: int
    detect_scale: float
    photos: int
    faces: int
    recall: float
    large_faces: int
    large_recall: float
    mean_iou: float  # of the found faces
    detections_per_photo: float
    p50_ms_per_photo: float
    # with a model: the labelled faces that were found, predicted twice
    matched: int | None = None
    accuracy_detected: float | None = None  # on the detected, aligned crops
    accuracy_boxes: float | None = None  # on the labelled boxes, cropped as the manifest crops them
    agreement: float | None = None  # same label from both crops

    def to_dict(self) -> dict:
        return asdict(self)


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def match(truth: list[Box], found: list[Detection], min_iou: float) -> list[tuple[int, int, float]]:
    """(truth index, detection index, IoU) pairs, greedily by overlap, each side used once."""
    pairs = sorted(((iou(t, d.box), i, j) for i, t in enumerate(truth) for j, d in enumerate(found)), reverse=True)
    used_t, used_d, out = set(), set(), []
    for overlap, i, j in pairs:
        if overlap >= min_iou and i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
            out.append((i, j, overlap))
    return out


def labelled_photos(manifest: str | Path, split: str | None, limit: int | None) -> list[tuple[Path, list, list]]:
    """(photo, boxes, labels) of every photo whose manifest rows carry a face box."""
    m = load_manifest(manifest)
    rows = filter_rows(m.df, SourceFilter(splits=[split]), split_flag="--split") if split else m.df
    rows = rows[rows["box_x"].notna()].reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{m.path}: no rows with a face box{f' in split {split!r}' if split else ''}; detection "
                          "needs uncropped photos with labelled boxes (e.g. ExpW)")  # fmt: skip
    rows["image"] = [str(p) for p in m.image_paths(rows)]
    photos = []
    for image, group in rows.groupby("image", sort=True):
        boxes = [tuple(int(v) for v in b) for b in group[["box_x", "box_y", "box_w", "box_h"]].to_numpy()]
        photos.append((Path(image), boxes, group["label"].astype(int).tolist()))
    return photos[:limit] if limit else photos


class PairedPredictions:
    """Labels predicted on detected crops and on labelled-box crops of the same faces, in batches
    of `batch` faces (crops are not all held at once: a manifest may have many thousand faces)."""

    def __init__(self, model, batch: int = 256):
        self.model, self.batch = model, batch
        self.detected, self.boxes, self.labels = [], [], []
        self.pending: tuple[list, list] = ([], [])

    def add(self, detected_crop: np.ndarray, box_crop: np.ndarray, label: int) -> None:
        self.pending[0].append(detected_crop)
        self.pending[1].append(box_crop)
        self.labels.append(label)
        if len(self.pending[0]) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending[0]:
            self.detected += self.model.face_probs(self.pending[0]).argmax(1).tolist()
            self.boxes += self.model.face_probs(self.pending[1]).argmax(1).tolist()
            self.pending = ([], [])

    def fill(self, row: DetectRow) -> None:
        self.flush()
        if not self.labels:
            return
        detected, boxes, truth = np.asarray(self.detected), np.asarray(self.boxes), np.asarray(self.labels)
        row.matched = len(truth)
        row.accuracy_detected = round(float((detected == truth).mean()), 4)
        row.accuracy_boxes = round(float((boxes == truth).mean()), 4)
        row.agreement = round(float((detected == boxes).mean()), 4)


def bench_detect(manifest: str | Path, settings: list[tuple[int, float]], *, model: str | Path | None = None,
                 split: str | None = None, limit: int | None = None, min_face: int = 24, min_iou: float = 0.4,
                 large: int = 80, align: bool = True) -> list[DetectRow]:  # fmt: skip
    photos = labelled_photos(manifest, split, limit)
    served = load_model(model) if model else None
    faces = sum(len(b) for _, b, _ in photos)
    rows = []
    for size, scale in settings:
        detector = make_detector("haar", min_face, size, scale)
        times, found_total, overlaps, large_total, large_found = [], 0, [], 0, 0
        paired = PairedPredictions(served) if served is not None else None
        for path, boxes, face_labels in photos:
            img = read_image(path)  # one photo at a time: decoding is not timed
            t0 = time.perf_counter()
            found = detector.detect(img)
            times.append(time.perf_counter() - t0)
            found_total += len(found)
            pairs = match(boxes, found, min_iou)
            overlaps += [o for _, _, o in pairs]
            is_large = [max(b[2], b[3]) >= large for b in boxes]
            large_total += sum(is_large)
            large_found += sum(is_large[i] for i, _, _ in pairs)
            if paired is not None:
                for i, j, _ in pairs:
                    paired.add(aligned_crop(img, found[j], served.spec.face_margin, align), crop_box(img, boxes[i]),
                               face_labels[i])  # fmt: skip
        row = DetectRow(size, scale, len(photos), faces, round(len(overlaps) / faces, 4), large_total,
                        round(large_found / large_total, 4) if large_total else float("nan"),
                        round(float(np.mean(overlaps)), 4) if overlaps else float("nan"),
                        round(found_total / len(photos), 3), round(statistics.median(times) * 1000, 2))  # fmt: skip
        if paired is not None:
            paired.fill(row)
        rows.append(row)
    return rows
