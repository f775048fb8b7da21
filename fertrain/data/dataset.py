"""A torch Dataset over manifest rows that yields uint8 faces at native size (float work happens on device)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from fertrain.data.preprocess import PreprocessSpec, load_prepared, prepare_face
from fertrain.errors import InputError
from fertrain.labels import SOFT_COLUMNS
from fertrain.manifests.image_files import MAX_IMAGE_PIXELS
from fertrain.manifests.io import Manifest


class ManifestFaces(Dataset):
    """Rows of a manifest -> (uint8 3xSxS face, label, soft target or NaNs, row position)."""

    def __init__(self, manifest: Manifest, rows: pd.DataFrame, spec: PreprocessSpec):
        # One OpenCV thread: set here, in the parent, so forked DataLoader workers inherit it. (Setting it
        # inside a forked worker can deadlock on the thread pool the parent already started; left at its
        # default, every worker starts a pool as large as the machine and they fight the trainer for cores.)
        cv2.setNumThreads(1)
        too_big = (rows["width"] * rows["height"] > MAX_IMAGE_PIXELS).to_numpy()
        if too_big.any():
            i = int(too_big.nonzero()[0][0])
            raise InputError(manifest.path, f"row id {rows['row_id'].iloc[i]}: a {rows['width'].iloc[i]}x"
                                            f"{rows['height'].iloc[i]} image is over the {MAX_IMAGE_PIXELS:,} pixels "
                                            "fertrain decodes", kind="image")  # fmt: skip
        self.paths = [str(p) for p in manifest.image_paths(rows)]
        boxes = rows[["box_x", "box_y", "box_w", "box_h"]]
        has_box = boxes.notna().all(axis=1).to_numpy()
        box_vals = boxes.fillna(0).to_numpy(dtype=np.int64)
        self.boxes = [tuple(b) if ok else None for b, ok in zip(box_vals.tolist(), has_box, strict=True)]
        self.labels = rows["label"].to_numpy(dtype=np.int64)
        if all(c in rows for c in SOFT_COLUMNS):
            self.soft = rows[list(SOFT_COLUMNS)].to_numpy(dtype=np.float32)
        else:
            self.soft = np.full((len(rows), len(SOFT_COLUMNS)), np.nan, dtype=np.float32)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        face = load_prepared(self.paths[i], self.boxes[i], self.spec)
        return face, int(self.labels[i]), self.soft[i], i


class FaceArrays(Dataset):
    """Faces already in memory (uint8 HxWx{1,3} RGB crops) -> the same items as ManifestFaces, each
    prepared by the same `prepare_face` (deployment: detected and aligned faces)."""

    def __init__(self, faces: list[np.ndarray], spec: PreprocessSpec):
        self.faces, self.spec = faces, spec
        self.nan = np.full(len(SOFT_COLUMNS), np.nan, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int):
        return prepare_face(self.faces[i], None, self.spec), -1, self.nan, i


def collate_faces(batch: list) -> tuple[torch.Tensor, ...]:
    """Faces of different sizes -> one uint8 Bx3xCxC canvas (C = largest side in the batch).

    Each face sits top-left; the padding repeats its last row/column, so bilinear sampling at
    the face's border never mixes in zeros. Returns the batch every consumer reads, from a loader
    or from the device-resident split (`ResidentFaces`): (canvas, sizes (B, 2) as h, w, host
    sizes, labels, soft targets, row positions). Sizes come twice: the first copy goes to the
    device with the canvas, the host copy is read without a device sync (`uniform_size`).
    """
    faces = [b[0] for b in batch]
    c = max(max(f.shape[0], f.shape[1]) for f in faces)
    canvas = np.empty((len(faces), c, c, 3), dtype=np.uint8)
    sizes = np.empty((len(faces), 2), dtype=np.int64)
    for k, f in enumerate(faces):
        h, w = f.shape[:2]
        canvas[k, :h, :w] = f
        if w < c:
            canvas[k, :h, w:] = f[:, -1:]
        if h < c:
            canvas[k, h:] = canvas[k, h - 1 : h]
        sizes[k] = (h, w)
    sizes_t = torch.from_numpy(sizes)
    return (torch.from_numpy(canvas).permute(0, 3, 1, 2), sizes_t, sizes_t,
            torch.tensor([b[1] for b in batch]), torch.from_numpy(np.stack([b[2] for b in batch])),
            torch.tensor([b[3] for b in batch]))  # fmt: skip


def face_loader(dataset: ManifestFaces, *, batch_size: int, workers: int, device: torch.device,
                order: list[int] | None = None, drop_last: bool = False,
                persistent: bool = False) -> DataLoader:  # fmt: skip
    """The one way faces are fed, to training, evaluation, export and the benchmarks alike:
    uint8 canvases from `workers` processes (prefetch 4), pinned for a CUDA device. `order` lists
    the sample positions of a training epoch; without it, rows come in manifest order. Workers
    draw nothing random, so results do not depend on worker seeds. `persistent` keeps the
    workers between passes (benchmarks time the steady state, not the start-up)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=order, shuffle=False, drop_last=drop_last,
                      num_workers=workers, pin_memory=device.type == "cuda", collate_fn=collate_faces,
                      prefetch_factor=4 if workers else None, persistent_workers=persistent and workers > 0)
