"""`fertrain bench latency MODEL --image PHOTO`: CPU latency per face, batch 1, for the model alone
and for the whole predict path (decode + detect + align + preprocess + model), with one thread
and with all of them, fp32 and int8 side by side. Medians and 95th percentiles in milliseconds.

"threads" are the cores the predict path may use: OpenCV's threads for detection, and onnxruntime
calls side by side, each on one thread (`fertrain.export.ort_session`), so one face's model call
runs on one thread in both rows.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrain.cores import available_cores
from fertrain.deploy.recognizer import Recognizer
from fertrain.errors import ConfigError
from fertrain.export.onnx import ONNX_NAME
from fertrain.export.quantize import INT8_NAME


@dataclass
class LatencyRow:
    model: str
    threads: int
    model_p50_ms: float
    model_p95_ms: float
    predict_p50_ms: float | None = None
    predict_p95_ms: float | None = None
    faces: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def models_of(target: Path) -> dict[str, Path]:
    """fp32 and int8 ONNX models of a run directory (those present), or one .onnx file."""
    if target.suffix.lower() == ".onnx":
        return {"int8" if target.name.endswith(".int8.onnx") else "fp32": target}
    names = (("fp32", ONNX_NAME), ("int8", INT8_NAME))
    found = {kind: target / name for kind, name in names if (target / name).is_file()}
    if not found:
        raise ConfigError(f"{target}: no {ONNX_NAME} or {INT8_NAME}; run `fertrain export onnx {target} [--int8]` "
                          "first")  # fmt: skip
    return found


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in times)
    return round(statistics.median(ms), 3), round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3)


def time_calls(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_latency(target: str | Path, image: str | Path | None = None, *, runs: int = 200, warmup: int = 20,
                  detector: str = "haar", detect_size: int = 320,
                  detect_scale: float = 1.1, min_face: int = 24) -> list[LatencyRow]:  # fmt: skip
    rows = []
    for kind, path in models_of(Path(target)).items():
        for threads in sorted({1, available_cores()}):
            cv2.setNumThreads(threads)
            recognizer = Recognizer(path, detector=detector, threads=threads, detect_size=detect_size,
                                    detect_scale=detect_scale, min_face=min_face)  # fmt: skip
            session = recognizer.model.session  # the predict path's own onnxruntime session
            shape = session.get_inputs()[0].shape
            x = np.random.default_rng(0).standard_normal((1, 3, shape[2], shape[3])).astype(np.float32)
            feed = {session.get_inputs()[0].name: x}
            model_only = time_calls(lambda s=session, f=feed: s.run(None, f), runs, warmup)
            row = LatencyRow(kind, threads, *percentiles(model_only))
            if image is not None:
                row.faces = len(recognizer.predict(image))
                times = time_calls(lambda r=recognizer: r.predict(image), max(20, runs // 4), max(3, warmup // 4))
                row.predict_p50_ms, row.predict_p95_ms = percentiles(times)
            rows.append(row)
    return rows
