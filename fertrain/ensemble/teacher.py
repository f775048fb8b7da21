"""A teacher is a run directory or an ENSEMBLE.json; both give logits and calibrated probabilities.

ENSEMBLE.json:
    {"format": "fertrain-ensemble-v1", "members": [{"run": "...", "weight": 0.7}, ...],
     "fusion_t": 1.0, "temperature": 1.0 (post-hoc, after fusion), "temperature_tta": "ten" (the
     --tta it was fitted on, once calibrated), "temperatures": {"none": 0.9, "ten": 0.8} (one per
     --tta calibrated for; "temperature" is the latest), "class_names": [...],
     "search": {...} (when weights were searched)}
Member paths are stored as written; relative ones resolve against the JSON's folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fertrain.atomic import atomic_write_json
from fertrain.calibration.per_tta import recorded_temperatures, temperature_for
from fertrain.ensemble.fusion import fuse, member_probs
from fertrain.ensemble.predictor import FaceSource, RunPredictor, image_faces, manifest_faces
from fertrain.errors import ConfigError, InputError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.io import Manifest
from fertrain.models.loading import CALIBRATION, posthoc_temperatures
from fertrain.runs import RunLockedError, StaleLockError, lock_state, read_lock, run_lock
from fertrain.runs.lock import stale_reason
from fertrain.runs.report_paths import report_path

ENSEMBLE_FORMAT = "fertrain-ensemble-v1"


@dataclass
class Teacher:
    """One run or a weighted ensemble of runs, as one source of logits."""

    path: Path
    members: list[RunPredictor]
    weights: list[float]
    fusion_t: float = 1.0
    temperature: float | list[float] = 1.0  # ensembles: post-hoc T after fusion; runs: the run's own T
    spec_json: dict = field(default_factory=dict)
    # the --tta whose logits `temperature` was fitted on; None: an ensemble nobody calibrated (T 1)
    temperature_tta: str | None = "none"

    @property
    def is_ensemble(self) -> bool:
        return self.path.suffix.lower() == ".json"

    def logits(self, manifest: Manifest, rows: pd.DataFrame, *, device: torch.device, batch_size: int = 256,
               workers: int = 4, tta: str = "none",
               on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Uncalibrated logits of manifest `rows`: a run's raw logits, or an ensemble's fused
        log-probabilities. `on_batch(n)` reports progress per batch and member."""
        return self.logits_of(manifest_faces(manifest, rows), device=device, batch_size=batch_size, workers=workers,
                              tta=tta, on_batch=on_batch)  # fmt: skip

    def face_probs(self, faces: list[np.ndarray], *, device: torch.device, batch_size: int = 64,
                   tta: str = "none") -> np.ndarray:  # fmt: skip
        """Calibrated probabilities of in-memory face crops (uint8 RGB or grey), each member
        preparing them with its own spec, exactly as it prepares manifest rows."""
        logits, _ = self.logits_of(image_faces(faces), device=device, batch_size=batch_size, workers=0, tta=tta)
        return self.calibrated_probs(logits)

    def member_logits(self, manifest: Manifest, rows: pd.DataFrame, *, device: torch.device, batch_size: int = 256,
                      workers: int = 4, tta: str = "none") -> tuple[list[np.ndarray], np.ndarray]:  # fmt: skip
        """Each member's own raw logits of manifest `rows` (one array for a run); `fused` combines them."""
        return self.member_logits_of(manifest_faces(manifest, rows), device=device, batch_size=batch_size,
                                     workers=workers, tta=tta)  # fmt: skip

    def logits_of(self, faces: FaceSource, *, device: torch.device, batch_size: int = 256, workers: int = 4,
                  tta: str = "none",
                  on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        member_logits, labels = self.member_logits_of(faces, device=device, batch_size=batch_size, workers=workers,
                                                      tta=tta, on_batch=on_batch)  # fmt: skip
        return self.fused(member_logits), labels

    def member_logits_of(self, faces: FaceSource, *, device: torch.device, batch_size: int = 256, workers: int = 4,
                         tta: str = "none", on_batch: Callable[[int], None] | None = None,
                         ) -> tuple[list[np.ndarray], np.ndarray]:  # fmt: skip
        outs = [m.logits(faces, device=device, batch_size=batch_size, workers=workers, tta=tta,
                         on_batch=on_batch) for m in self.members]  # fmt: skip
        return [logits for logits, _ in outs], outs[0][1]

    def fused(self, member_logits: list[np.ndarray]) -> np.ndarray:
        """The teacher's logits from its members' raw ones: a run's as they are, an ensemble's fused
        log-probabilities (each member at its own temperature, then the weights)."""
        if not self.is_ensemble:
            return member_logits[0]
        return fuse(self.member_probs(member_logits), self.weights, self.fusion_t)

    def member_probs(self, member_logits: list[np.ndarray]) -> list[np.ndarray]:
        """Each member's calibrated probabilities (at its own temperature): what fusion weighs."""
        return [member_probs(lg, m.temperature) for lg, m in zip(member_logits, self.members, strict=True)]

    def posthoc_temperatures(self) -> dict:
        """{tta: temperature} that earlier `fertrain calibrate` calls fitted for this teacher (each
        call adds its own --tta's); the trainer's single-view fit of a run is not one of them."""
        return ensemble_temperatures(self.spec_json) if self.is_ensemble else posthoc_temperatures(self.path)[1]

    def report_path(self, name: str) -> Path:
        """Where a report about this teacher goes: inside a run directory, beside an ENSEMBLE.json."""
        return report_path(self.path, name, ensemble=self.is_ensemble)

    def check_writable(self, recover_stale: bool = False) -> None:
        """Before the work: refuse at once a run directory another process holds, or one with a
        crashed run's lock (unless `recover_stale`), instead of after a long evaluation."""
        if self.is_ensemble:
            return
        state = lock_state(self.path)
        if state == "running":
            raise RunLockedError(self.path, read_lock(self.path))
        if state == "stale" and not recover_stale:
            holder = read_lock(self.path)
            raise StaleLockError(self.path, holder, stale_reason(holder))

    def writing(self, recover_stale: bool = False) -> contextlib.AbstractContextManager:
        """Guard for writing reports: a run directory is locked (a training run may be active there)."""
        return contextlib.nullcontext() if self.is_ensemble else run_lock(self.path, recover_stale=recover_stale)

    def calibrated_probs(self, logits: np.ndarray) -> np.ndarray:
        return member_probs(logits, self.temperature)

    def describe(self) -> dict:
        """Provenance for soft-label metadata and reports."""
        return {
            "teacher": str(self.path), "ensemble": self.is_ensemble, "fusion_t": self.fusion_t,
            "temperature": self.temperature, "class_names": list(CLASS_NAMES),
            "members": [{"run": str(m.run_dir), "checkpoint": str(m.checkpoint), "sha256": m.checkpoint_sha256(),
                         "weight": w, "temperature": m.temperature, "temperature_source": m.temperature_source,
                         "backbone": m.config.get("backbone"), "preprocess": m.spec.to_dict()}
                        for m, w in zip(self.members, self.weights, strict=True)],
        }  # fmt: skip


    def fingerprint(self) -> str:
        """sha256 of what the teacher's outputs depend on (members' weights by sha256, fusion weights,
        temperatures, preprocessing), not of where it lies: the same teacher moved elsewhere keeps it."""
        content = self.describe()
        content.pop("teacher")
        for member in content["members"]:
            member.pop("run")
            member.pop("checkpoint")
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def load_teacher(path: str | Path, tta: str | None = None) -> Teacher:
    """A run directory or ENSEMBLE.json. `tta`: serve with the temperature fitted on that --tta's
    logits when one was (`fertrain calibrate --tta`), else with the latest one; `temperature_tta`
    says which logits it was fitted on. Ensemble members keep their own latest temperatures (the
    ensemble's post-hoc T was fitted on top of those)."""
    path = Path(path)
    if path.is_dir():
        m = RunPredictor.load(path, tta)
        return Teacher(path, [m], [1.0], temperature=m.temperature, temperature_tta=m.temperature_tta)
    if path.suffix.lower() != ".json" or not path.is_file():
        raise ConfigError(f"{path}: expected a run directory or an ENSEMBLE.json")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("format") != ENSEMBLE_FORMAT:
        raise InputError(path, f"not a fertrain ensemble (format {spec.get('format')!r})", kind="format")
    runs = [Path(m["run"]) if Path(m["run"]).is_absolute() else path.parent / m["run"] for m in spec["members"]]
    members = [RunPredictor.load(r) for r in runs]
    temperature, fitted_on = temperature_for(tta, ensemble_temperatures(spec), spec.get("temperature", 1.0),
                                             spec.get("temperature_tta"))  # fmt: skip
    return Teacher(path, members, [float(m["weight"]) for m in spec["members"]], float(spec.get("fusion_t", 1.0)),
                   temperature, spec, fitted_on)  # fmt: skip


def ensemble_temperatures(spec: dict) -> dict:
    """{tta: temperature} an ENSEMBLE.json records (its post-hoc fits after fusion)."""
    return recorded_temperatures(spec.get("temperatures"), spec.get("temperature_tta"), spec.get("temperature"))


def parse_member(text: str) -> tuple[Path, float | None]:
    """RUN_DIR or RUN_DIR:WEIGHT."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail.replace(".", "", 1).isdigit():
        return Path(head), float(tail)
    return Path(text), None


def write_ensemble(out: str | Path, runs: list[Path], weights: list[float], *, fusion_t: float = 1.0,
                   search: dict | None = None) -> Path:  # fmt: skip
    out = Path(out)
    for r in runs:
        if not (r / "best.pt").is_file() and not (r / "checkpoint_last.pt").is_file():
            raise ConfigError(f"--member {r}: not a trained run (no best.pt)")
    spec = {"format": ENSEMBLE_FORMAT, "members": [{"run": str(r.resolve()), "weight": float(w)}
                                                   for r, w in zip(runs, weights, strict=True)],
            "fusion_t": fusion_t, "temperature": 1.0, "class_names": list(CLASS_NAMES)}  # fmt: skip
    if search:
        spec["search"] = search
    return atomic_write_json(out, spec)


__all__ = ["CALIBRATION", "ENSEMBLE_FORMAT", "Teacher", "load_teacher", "parse_member", "write_ensemble"]
