"""Logits from a trained run (one teacher) on manifest rows, with its saved preprocessing.

A run's temperature: the post-hoc one written by `fertrain calibrate` (calibration.json with
`"posthoc": true`, a scalar or one value per class) when present, else the one fitted on
validation logits for best.pt during training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fertrain.data import ManifestFaces, PreprocessSpec, face_loader
from fertrain.engine.evaluate import collect_logits
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.io import Manifest
from fertrain.models import load_run_model

CALIBRATION = "calibration.json"


@dataclass
class RunPredictor:
    run_dir: Path
    model: torch.nn.Module
    checkpoint: Path
    spec: PreprocessSpec
    temperature: float | list[float]
    temperature_source: str
    config: dict = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunPredictor:
        run_dir = Path(run_dir)
        model, ckpt, path = load_run_model(run_dir)
        t: float | list[float] = float(ckpt.get("temperature", 1.0))
        source = f"{path.name} (validation, training)"
        cal = run_dir / CALIBRATION
        if cal.is_file():
            data = json.loads(cal.read_text(encoding="utf-8"))
            if data.get("posthoc"):
                t, source = data["temperature"], f"{CALIBRATION} (fertrain calibrate)"
        return cls(run_dir, model, path, PreprocessSpec.from_dict(ckpt["preprocess"]), t, source, ckpt["config"])

    def checkpoint_sha256(self) -> str:
        return sha256_file(self.checkpoint)

    def logits(
        self, manifest: Manifest, rows: pd.DataFrame, *, device: torch.device, batch_size: int = 256,
        workers: int = 4, tta_flip: bool = False, amp: bool = False, on_batch: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw logits, labels) for `rows`, in row order."""
        loader = face_loader(ManifestFaces(manifest, rows.reset_index(drop=True), self.spec), batch_size=batch_size,
                             workers=workers, device=device)  # fmt: skip
        logits, labels, _ = collect_logits(self.model.to(device), loader, device, self.spec, amp=amp,
                                           tta_flip=tta_flip, on_batch=on_batch)  # fmt: skip
        return logits, labels
