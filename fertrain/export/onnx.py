"""`fertrain export onnx RUN_DIR`: the served model (s·cos θ logits, no margin) as ONNX.

Writes `model.onnx` (dynamic batch) and `model.onnx.json` (preprocessing, class names,
temperature, input/output names) and checks onnxruntime against PyTorch on real-shaped
inputs: the max abs logit difference is reported, and above `tolerance` it is an error.
Inside a run directory the export holds the run's lock, so it never writes into a run that
is still training.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from fertrain.atomic import atomic_path, atomic_write_json
from fertrain.data.preprocess import PreprocessSpec
from fertrain.errors import FertrainError
from fertrain.models import load_run_model
from fertrain.models.loading import serving_temperatures
from fertrain.runs import run_lock
from fertrain.runs.lock import LOCK_NAME
from fertrain.runs.status import STATUS_NAME

ONNX_NAME = "model.onnx"
OPSET = 17


def export_onnx(run_or_ckpt: str | Path, out: str | Path | None = None, *, tolerance: float = 1e-3,
                batch: int = 4, seed: int = 0, recover_stale: bool = False) -> dict:  # fmt: skip
    model, ckpt, ckpt_path = load_run_model(run_or_ckpt)
    temperature, fits = serving_temperatures(ckpt_path.parent, ckpt, ckpt_path.name)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    out = Path(out) if out else ckpt_path.parent / ONNX_NAME
    size = spec.img_size
    example = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    run_dir = ckpt_path.parent
    is_run = (run_dir / LOCK_NAME).exists() or (run_dir / STATUS_NAME).is_file()
    guard = run_lock(run_dir, recover_stale=recover_stale, command=f"export onnx -> {out}") if is_run else (
        contextlib.nullcontext())  # fmt: skip
    with guard:
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(model, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)  # fmt: skip
        parity = check_parity(model, out, size, seed=seed + 1)
        spec_info = ckpt["model_spec"]
        sidecar = {
            "model": out.name, "checkpoint": str(ckpt_path), "backbone": spec_info["backbone"],
            "head": spec_info["head"], "model_spec": spec_info, "class_names": ckpt["class_names"],
            "temperature": temperature.value, "temperature_source": temperature.source,
            "temperature_tta": temperature.tta, "temperatures": {tta: fit.value for tta, fit in fits.items()},
            "input": {"name": "input", "shape": ["batch", 3, size, size], "dtype": "float32"},
            "output": {"name": "logits", "meaning": "s*cos(theta) (ArcFace, no margin)" if spec_info["head"] ==
                       "arcface" else "linear logits", "probabilities": "softmax(logits / temperature)"},
            "preprocess": spec.to_dict(), "opset": OPSET, "parity": parity,
        }  # fmt: skip
        atomic_write_json(Path(f"{out}.json"), sidecar)
    if parity["max_abs_diff"] > tolerance:
        raise FertrainError(f"{out}: onnxruntime differs from PyTorch by {parity['max_abs_diff']:.2e} "
                            f"(> {tolerance:g}); the export is not faithful")  # fmt: skip
    return {"path": str(out), **parity}


def check_parity(model: torch.nn.Module, onnx_path: Path, size: int, *, seed: int = 1, batch: int = 5) -> dict:
    import onnxruntime as ort

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    return {"max_abs_diff": diff, "batch": batch, "argmax_agree": bool((ref.argmax(1) == got.argmax(1)).all())}
