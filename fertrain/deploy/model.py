"""What turns face crops into calibrated probabilities: a trained run or ensemble (PyTorch), or a
`model.onnx` with its sidecar (onnxruntime). Both prepare faces with the run's own preprocessing
contract (`prepare_face` and the evaluation resize/normalize of `collect_logits`), so a face gets
the same probabilities here as in `fertrain evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import fertrain.ensemble as ensemble  # a lazy package: timm loads only for PyTorch models
from fertrain.calibration import scale_logits
from fertrain.data import FaceArrays, PreprocessSpec, face_loader
from fertrain.engine.evaluate import collect_logits
from fertrain.errors import InputError
from fertrain.export.ort_module import OrtModule
from fertrain.labels import CLASS_NAMES


class TorchModel:
    """A run directory or ENSEMBLE.json, on `device`."""

    def __init__(self, path: str | Path, device: torch.device, tta: str = "none"):
        self.teacher = ensemble.load_teacher(path)
        self.device, self.tta = device, tta
        self.spec = self.teacher.members[0].spec
        self.class_names = list(CLASS_NAMES)
        self.describe = {"backend": "torch", "model": str(path), "device": str(device),
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
        self.temperature = meta.get("temperature", 1.0)
        self.class_names = list(meta.get("class_names", CLASS_NAMES))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.module = OrtModule(self.session)
        self.describe = {"backend": "onnxruntime", "model": str(path), "temperature": self.temperature,
                         "int8": meta.get("int8") is not None, "tta": tta}  # fmt: skip

    def face_probs(self, faces: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        cpu = torch.device("cpu")
        loader = face_loader(FaceArrays(faces, self.spec), batch_size=batch_size, workers=0, device=cpu)
        logits, _, _ = collect_logits(self.module, loader, cpu, self.spec, tta=self.tta)
        return torch.softmax(scale_logits(torch.as_tensor(logits, dtype=torch.float64), self.temperature), 1).numpy()


def load_model(path: str | Path, *, device: torch.device, threads: int | None = None,
               tta: str = "none") -> TorchModel | OnnxModel:  # fmt: skip
    """A run directory or ENSEMBLE.json (PyTorch), or a .onnx file with its sidecar (onnxruntime);
    `tta`: test-time augmentation of every face (none|flip|five|ten)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path, threads, tta)
    return TorchModel(path, device, tta)
