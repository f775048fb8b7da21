"""`fertrain export onnx RUN --int8`: an int8 ONNX model that is checked before it is written.

Static quantization (onnxruntime's `quant_pre_process`, then `quantize_static` with QDQ nodes,
int8 weights per channel, uint8 activations) calibrated on images of the run's own training
split, prepared with the run's preprocessing, with activation ranges from the 99.999th
percentile rather than min/max (on a FER2013 mobilenetv3_large_100 student min/max lost 1.5
points of PublicTest accuracy, the percentile 0.3; docs/benchmarks.md#deployment); or dynamic
quantization (weights only). The int8 model and the fp32 one are then both evaluated on the
validation split: accuracy, agreement and the largest probability change go into the sidecar,
and a model that loses more than the tolerance is not written. Per-channel weights have lost
accuracy on some networks (MobileNetV3 in some onnxruntime versions): when they do here,
per-tensor weights are tried too and the better one kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fertrain.atomic import atomic_path, atomic_write_json
from fertrain.cores import available_cores
from fertrain.data import ManifestFaces, PreprocessSpec
from fertrain.data.serving import model_input, softmax
from fertrain.errors import ConfigError, FertrainError
from fertrain.export.onnx import ONNX_NAME, export_onnx
from fertrain.export.ort_session import one_thread_session, session_logits
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.runs.checkpoints import run_checkpoint
from fertrain.runs.reports import ALIGNMENT_REPORT

INT8_NAME = "model.int8.onnx"


def run_manifest(run_dir: Path) -> str:
    report = run_dir / ALIGNMENT_REPORT
    if not report.is_file():
        raise ConfigError(f"{run_dir}: no {ALIGNMENT_REPORT}; give --manifest for calibration and the accuracy check")
    return json.loads(report.read_text(encoding="utf-8"))["manifest_resolved"]


def prepared_rows(manifest, rows, spec: PreprocessSpec, workers: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows' faces prepared as the run prepares them (`workers` threads decode), and their labels."""
    faces = ManifestFaces(manifest, rows, spec)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # OpenCV decodes without the GIL
        items = list(pool.map(faces.__getitem__, range(len(faces))))
    return [it[0] for it in items], np.array([it[1] for it in items], dtype=np.int64)


class PreparedCalibration:
    """onnxruntime's calibration data reader: the serving input of prepared faces, in batches."""

    def __init__(self, prepared: list[np.ndarray], spec: PreprocessSpec, batch_size: int = 32):
        self.batches = (model_input(prepared[i : i + batch_size], spec) for i in range(0, len(prepared), batch_size))

    def get_next(self) -> dict | None:
        x = next(self.batches, None)
        return None if x is None else {"input": x}


def served_logits(path: Path, faces: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Logits of prepared faces as `fertrain predict` computes them (the same session and batches)."""
    return session_logits(one_thread_session(str(path)), faces, spec, workers=available_cores())


def quantize(pre: Path, out: Path, *, dynamic: bool, per_channel: bool, reader_factory) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if dynamic:
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
        return
    with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
        quantize_static(str(pre), str(out), reader_factory(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.Percentile)  # fmt: skip


def export_int8(run_or_ckpt: str | Path, *, out: str | Path | None = None, dynamic: bool = False,
                calibration_images: int = 256, tolerance: float = 0.01, manifest: str | Path | None = None,
                split: str = "val", max_eval: int | None = None, workers: int = 0, seed: int = 0,
                recover_stale: bool = False) -> dict:  # fmt: skip
    """Quantize the run's ONNX model to int8, check it on `split` and write it with its sidecar.

    Returns the check: fp32 and int8 accuracy, their agreement, the largest probability change and
    which weight granularity was kept. Raises when int8 accuracy is more than `tolerance` below fp32."""
    from onnxruntime.quantization import quant_pre_process

    ckpt_path = run_checkpoint(run_or_ckpt)
    run_dir = ckpt_path.parent
    fp32 = run_dir / ONNX_NAME
    if not fp32.is_file() or not Path(f"{fp32}.json").is_file():
        export_onnx(ckpt_path, recover_stale=recover_stale)
    sidecar = json.loads(Path(f"{fp32}.json").read_text(encoding="utf-8"))
    spec = PreprocessSpec.from_dict(sidecar["preprocess"])
    m = load_manifest(manifest or run_manifest(run_dir))
    rng = np.random.default_rng(seed)
    train = filter_rows(m.df, SourceFilter(splits=["train"])).reset_index(drop=True)
    calib = train.iloc[np.sort(rng.permutation(len(train))[:calibration_images])].reset_index(drop=True)
    held = filter_rows(m.df, SourceFilter(splits=[split]), split_flag="--split").reset_index(drop=True)
    if max_eval:
        held = held.iloc[:max_eval]
    if len(held) == 0 or (not dynamic and len(calib) == 0):
        raise ConfigError(f"{m.path}: need train rows to calibrate and {split!r} rows to check the int8 model")
    out = Path(out) if out else run_dir / INT8_NAME
    held_faces, labels = prepared_rows(m, held, spec, workers)
    calib_faces = [] if dynamic else prepared_rows(m, calib, spec, workers)[0]
    ref_logits = served_logits(fp32, held_faces, spec)
    ref_probs = softmax(ref_logits.astype(np.float64))
    ref_acc = float((ref_logits.argmax(1) == labels).mean())
    tried = []
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        for per_channel in ([False] if dynamic else [True, False]):
            candidate = Path(tmp) / f"int8_{'channel' if per_channel else 'tensor'}.onnx"
            quantize(pre, candidate, dynamic=dynamic, per_channel=per_channel,
                     reader_factory=lambda: PreparedCalibration(calib_faces, spec))  # fmt: skip
            logits = served_logits(candidate, held_faces, spec)
            probs = softmax(logits.astype(np.float64))
            tried.append({
                "weights": "per-channel" if per_channel else "per-tensor", "path": candidate,
                "accuracy": float((logits.argmax(1) == labels).mean()),
                "agreement": float((logits.argmax(1) == ref_logits.argmax(1)).mean()),
                "max_prob_change": float(np.abs(probs - ref_probs).max()),
            })  # fmt: skip
            if ref_acc - tried[-1]["accuracy"] <= tolerance:
                break
        best = max(tried, key=lambda t: t["accuracy"])
        check = {"mode": "dynamic" if dynamic else "static QDQ", "weights": best["weights"], "split": split,
                 "activation_ranges": None if dynamic else "percentile 99.999",
                 "n": len(held), "fp32_accuracy": ref_acc, "int8_accuracy": best["accuracy"],
                 "agreement": best["agreement"], "max_prob_change": best["max_prob_change"], "tolerance": tolerance,
                 "calibration_images": 0 if dynamic else len(calib), "manifest": str(m.path),
                 "tried": [{k: v for k, v in t.items() if k != "path"} for t in tried]}  # fmt: skip
        if ref_acc - best["accuracy"] > tolerance:
            raise FertrainError(f"int8 accuracy {best['accuracy']:.4f} is {ref_acc - best['accuracy']:.4f} below fp32 "
                                f"{ref_acc:.4f} on {split} (n={len(held)}), over the tolerance {tolerance:g}: not "
                                "written (try --int8-dynamic, or raise --int8-tolerance)")  # fmt: skip
        with atomic_path(out) as dest:
            shutil.copyfile(best["path"], dest)
    atomic_write_json(Path(f"{out}.json"), {**sidecar, "model": out.name, "int8": check})
    return {"path": str(out), **check}
