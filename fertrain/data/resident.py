"""A split held on the training device: every face prepared once, batches gathered there.

FER datasets are small (FER2013 train: 28,709 faces of 48x48, ~200 MB as 3-channel uint8), and
at 48-112 px a GPU trains faster than loader workers can hand it batches: each epoch starts new
worker processes, every batch is collated, pinned and copied. Holding the split on the device
removes all of that. The faces are the ones the DataLoader path delivers (same `ManifestFaces`
items, same replicated-edge padding as `collate_faces`), so a batch gathered here equals the
loader's batch for the same sample positions, value for value.

Batches have `collate_faces`'s shape (images, sizes, host_sizes, labels, soft, index), here with
everything but the host sizes already on the device.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from fertrain.data.dataset import ManifestFaces, face_loader

DATA_ON_DEVICE = ("auto", "on", "off")
AUTO_MAX_BYTES = 4 * 2**30  # `auto` keeps a split on the device up to this size ...
AUTO_MAX_FRACTION = 0.2  # ... and this fraction of the device's memory


def resident_bytes(rows: pd.DataFrame, img_size: int) -> int:
    """An upper bound of a split's canvas bytes on the device: faces are cropped to their box and
    shrunk to at most img_size (`prepare_face`), kept as 3-channel uint8 squares of the largest side."""
    w = rows["box_w"].where(rows["box_w"].notna(), rows["width"])
    h = rows["box_h"].where(rows["box_h"].notna(), rows["height"])
    side = int(min(img_size, max(w.max(), h.max()))) if len(rows) else 0
    return len(rows) * 3 * side * side


def use_data_on_device(mode: str, device: torch.device, nbytes: int) -> bool:
    """`on`/`off` as asked; `auto`: on a CUDA device when the splits fit the budget above."""
    if mode != "auto":
        return mode == "on"
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return nbytes <= min(AUTO_MAX_BYTES, AUTO_MAX_FRACTION * total)


class ResidentFaces:
    """`dataset`'s faces in one uint8 (N, 3, S, S) tensor on `device` (S: the largest face side),
    with sizes, labels, soft targets and row positions beside it."""

    def __init__(self, dataset: ManifestFaces, device: torch.device, *, workers: int = 0, chunk: int = 1024):
        self.device = device
        canvases, sizes = [], []
        for x, s, *_ in face_loader(dataset, batch_size=chunk, workers=workers,
                                                 device=torch.device("cpu")):  # fmt: skip
            canvases.append(x)
            sizes.append(s)
        side = max(c.shape[-1] for c in canvases)
        self.images = torch.empty((len(dataset), 3, side, side), dtype=torch.uint8, device=device)
        pos = 0
        for c in canvases:
            # enlarge a chunk's canvas by repeating its last row and column: the same padding
            # `collate_faces` would have written at the larger side
            edge = torch.arange(side).clamp(max=c.shape[-1] - 1)
            self.images[pos : pos + len(c)] = c[:, :, edge][:, :, :, edge].to(device)
            pos += len(c)
        self.host_sizes = torch.cat(sizes)
        self.sizes = self.host_sizes.to(device)
        self.labels = torch.tensor(dataset.labels, device=device)
        self.soft = torch.tensor(dataset.soft, device=device)

    def __len__(self) -> int:
        return len(self.host_sizes)

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def gather(self, positions: np.ndarray, positions_dev: torch.Tensor) -> tuple:
        """The batch of these sample positions (host and device copies of the same indices), on a
        canvas as large as its largest face, as `collate_faces` builds it."""
        host_sizes = self.host_sizes[torch.from_numpy(positions)]
        side = int(host_sizes.max())
        images = self.images[:, :, :side, :side].index_select(0, positions_dev)
        return (images, self.sizes.index_select(0, positions_dev), host_sizes,
                self.labels.index_select(0, positions_dev), self.soft.index_select(0, positions_dev), positions_dev)

    def batches(self, order: np.ndarray, batch_size: int) -> Iterator[tuple]:
        """Full batches of `order` (sample positions), in order; the last partial one is dropped."""
        order = np.ascontiguousarray(order, dtype=np.int64)
        order_dev = torch.from_numpy(order).to(self.device)  # one copy per epoch, not one per step
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield self.gather(order[start : start + batch_size], order_dev[start : start + batch_size])

    def eval_batches(self, batch_size: int) -> Iterator[tuple]:
        """Every sample in row order, the last batch possibly smaller (evaluation)."""
        order = np.arange(len(self), dtype=np.int64)
        order_dev = torch.arange(len(self), device=self.device)
        for start in range(0, len(order), batch_size):
            yield self.gather(order[start : start + batch_size], order_dev[start : start + batch_size])
