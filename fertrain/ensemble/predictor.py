"""Logits from a trained run (one teacher) on manifest rows, with its saved preprocessing.

A run's temperature: the post-hoc one written by `fertrain calibrate` (calibration.json with
`"posthoc": true`, a scalar or one value per class; one per --tta it was calibrated for) when
present, else the one fitted on validation logits for best.pt during training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fertrain.data import FaceArrays, ManifestFaces, PreprocessSpec, face_loader
from fertrain.engine.evaluate import collect_logits
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.io import Manifest
from fertrain.models import load_run_model
from fertrain.models.loading import serving_temperature


@dataclass
class RunPredictor:
    run_dir: Path
    model: torch.nn.Module
    checkpoint: Path
    spec: PreprocessSpec
    temperature: float | list[float]
    temperature_source: str
    config: dict = field(default_factory=dict)
    temperature_tta: str = "none"  # the --tta whose logits the temperature was fitted on

    @classmethod
    def load(cls, run_dir: str | Path, tta: str | None = None) -> RunPredictor:
        """`tta`: serve with the temperature fitted on that --tta's logits when the run has one
        (None: the run's default, its latest calibration)."""
        run_dir = Path(run_dir)
        model, ckpt, path = load_run_model(run_dir)
        t = serving_temperature(run_dir, ckpt, path.name, tta)
        return cls(run_dir, model, path, PreprocessSpec.from_dict(ckpt["preprocess"]), t.value, t.source,
                   ckpt["config"], t.tta)  # fmt: skip

    def checkpoint_sha256(self) -> str:
        return sha256_file(self.checkpoint)

    def logits(
        self, faces: FaceSource, *, device: torch.device, batch_size: int = 256, workers: int = 4,
        tta: str = "none", amp: bool = False, on_batch: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw logits, labels) for the faces `faces(spec)` gives (manifest rows or in-memory crops,
        prepared with this run's own spec), in their order."""
        loader = face_loader(faces(self.spec), batch_size=batch_size, workers=workers, device=device)
        logits, labels, _ = collect_logits(self.model.to(device), loader, device, self.spec, amp=amp,
                                           tta=tta, on_batch=on_batch)  # fmt: skip
        return logits, labels


FaceSource = Callable[[PreprocessSpec], Dataset]


def manifest_faces(manifest: Manifest, rows: pd.DataFrame) -> FaceSource:
    """The faces of manifest `rows`, for any member's preprocessing."""
    rows = rows.reset_index(drop=True)
    return lambda spec: ManifestFaces(manifest, rows, spec)


def image_faces(faces: list[np.ndarray]) -> FaceSource:
    """In-memory face crops (uint8 RGB or grey), for any member's preprocessing."""
    return lambda spec: FaceArrays(faces, spec)
