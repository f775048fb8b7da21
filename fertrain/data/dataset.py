"""A torch Dataset over manifest rows that yields uint8 CHW faces (float work happens on device)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fertrain.data.preprocess import PreprocessSpec, load_prepared
from fertrain.labels import SOFT_COLUMNS
from fertrain.manifests.io import Manifest


class ManifestFaces(Dataset):
    """Rows of a manifest -> (uint8 3xSxS face, label, soft target or NaNs, row position)."""

    def __init__(self, manifest: Manifest, rows: pd.DataFrame, spec: PreprocessSpec):
        roots = manifest.root_dirs()
        self.paths = [str(roots[r] / p) for r, p in zip(rows["root"], rows["path"], strict=True)]
        boxes = rows[["box_x", "box_y", "box_w", "box_h"]]
        has_box = boxes.notna().all(axis=1).to_numpy()
        box_vals = boxes.fillna(0).to_numpy(dtype=np.int64)
        self.boxes = [tuple(b) if ok else None for b, ok in zip(box_vals.tolist(), has_box, strict=True)]
        self.labels = rows["label"].to_numpy(dtype=np.int64)
        if all(c in rows for c in SOFT_COLUMNS):
            self.soft = rows[list(SOFT_COLUMNS)].to_numpy(dtype=np.float32)
        else:
            self.soft = np.full((len(rows), len(SOFT_COLUMNS)), np.nan, dtype=np.float32)
        self.row_ids = rows["row_id"].tolist()
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        face = load_prepared(self.paths[i], self.boxes[i], self.spec)
        return torch.from_numpy(face).permute(2, 0, 1), int(self.labels[i]), torch.from_numpy(self.soft[i]), i
