"""What turns face crops into calibrated probabilities: a trained run or ensemble (PyTorch), or a
`model.onnx` with its sidecar (onnxruntime). Both prepare faces with the run's own preprocessing
contract (`prepare_face`, then the evaluation resize/normalize), so a face gets the same
probabilities here as in `fertrain evaluate`.

An ONNX model is served with NumPy and OpenCV only (`session_logits`): torch, timm and the engine
load only for a PyTorch model, through the lazy packages below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import fertrain.engine as engine  # lazy packages: torch and timm load only for PyTorch models
import fertrain.ensemble as ensemble
from fertrain.calibration.per_tta import recorded_temperatures, temperature_for
from fertrain.cores import available_cores
from fertrain.data.preprocess import PreprocessSpec
from fertrain.data.serving import calibrated_probs
from fertrain.errors import InputError
from fertrain.export.ort_session import SERVING_BATCH, one_thread_session, session_logits
from fertrain.labels import CLASS_NAMES


class TorchModel:
    """A run directory or ENSEMBLE.json, on `device` (auto, cpu, cuda, cuda:N, mps)."""

    def __init__(self, path: str | Path, device: str, tta: str = "none"):
        self.device = engine.resolve_device(device)
        self.workers = 1  # torch spreads each call over the cores itself
        self.teacher = ensemble.load_teacher(path, tta)
        self.tta = tta
        self.temperature_tta = self.teacher.temperature_tta
        self.spec = self.teacher.members[0].spec
        self.class_names = list(CLASS_NAMES)
        self.describe = {"backend": "torch", "model": str(path), "device": str(self.device),
                         "temperature": self.teacher.temperature, "tta": tta}  # fmt: skip

    def face_probs(self, faces: list[np.ndarray]) -> np.ndarray:
        return self.teacher.face_probs(faces, device=self.device, tta=self.tta)


class OnnxModel:
    """A `model.onnx` (fp32 or int8) and its `model.onnx.json` sidecar, on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None, tta: str = "none"):
        path, self.tta = Path(path), tta
        sidecar = Path(f"{path}.json")
        if not path.is_file() or not sidecar.is_file():
            raise InputError(sidecar if path.is_file() else path, "an ONNX model needs the file and its .json sidecar "
                             "(fertrain export onnx writes both)", kind="missing")  # fmt: skip
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        self.spec = PreprocessSpec.from_dict(meta["preprocess"])
        latest, latest_tta = meta.get("temperature", 1.0), meta.get("temperature_tta", "none")  # older: single view
        by_tta = recorded_temperatures(meta.get("temperatures"), latest_tta, latest)
        self.temperature, self.temperature_tta = temperature_for(tta, by_tta, latest, latest_tta)
        self.class_names = list(meta.get("class_names", CLASS_NAMES))
        self.workers = threads or available_cores()  # batches run side by side, one core each
        self.session = one_thread_session(str(path))
        self.describe = {"backend": "onnxruntime", "model": str(path), "temperature": self.temperature,
                         "int8": meta.get("int8") is not None, "tta": tta}  # fmt: skip

    def logits(self, faces: list[np.ndarray], batch_size: int = SERVING_BATCH) -> np.ndarray:
        """Serving logits of uint8 face crops (RGB or grey), `batch_size` faces per session call."""
        return session_logits(self.session, faces, self.spec, tta=self.tta, batch_size=batch_size,
                              workers=self.workers, prepared=False)  # fmt: skip

    def face_probs(self, faces: list[np.ndarray], batch_size: int = SERVING_BATCH) -> np.ndarray:
        return calibrated_probs(self.logits(faces, batch_size), self.temperature)


def load_model(path: str | Path, *, device: str = "cpu", threads: int | None = None,
               tta: str = "none") -> TorchModel | OnnxModel:  # fmt: skip
    """A run directory or ENSEMBLE.json (PyTorch), or a .onnx file with its sidecar (onnxruntime);
    `tta`: test-time augmentation of every face (none|flip|five|ten)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path, threads, tta)
    return TorchModel(path, device, tta)
