"""Serving logits of an onnxruntime session over faces, with NumPy and OpenCV only (no torch:
`fertrain predict` on an ONNX model never loads it). The int8 exporter's accuracy check and
`fertrain predict` both call `session_logits`, so the check measures what is served.

Cores are used by running batches side by side, each on one onnxruntime thread: on a 2-core
machine two one-thread calls on batches of 64 label 1,000 faces in 0.45 s, one two-thread call
at a time in 0.65 s (a mobilenetv3 student's small layers leave a second intra-op thread mostly
waiting); docs/benchmarks.md. A session may be run from several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from fertrain.data.preprocess import PreprocessSpec, prepare_face
from fertrain.data.serving import merge_views, model_input, tta_views

# faces per onnxruntime call: 1,000 faces on two cores took 0.41 s in calls of 32, 0.45 s in calls of 64
SERVING_BATCH = 32


def one_thread_session(path: str) -> ort.InferenceSession:
    """A CPU session whose every call runs on the calling thread (see the module note)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def session_logits(session, faces: list[np.ndarray], spec: PreprocessSpec, *, tta: str = "none",
                   batch_size: int = SERVING_BATCH, workers: int = 1, prepared: bool = True) -> np.ndarray:  # fmt: skip
    """Logits of uint8 faces, `batch_size` per session call, up to `workers` calls at once (the
    same numbers in the same order whatever `workers` is). `prepared`: the faces went through
    `prepare_face` already; if not, each batch is prepared where it runs. `tta` as in
    `fertrain.engine.evaluate.tta_logits`."""
    name = session.get_inputs()[0].name

    def batch_logits(start: int) -> np.ndarray:
        chunk = faces[start : start + batch_size]
        if not prepared:
            chunk = [prepare_face(f, None, spec) for f in chunk]
        x = model_input(chunk, spec)
        return merge_views([session.run(None, {name: v})[0] for v in tta_views(x, tta)], tta)

    starts = range(0, len(faces), batch_size)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(workers, len(starts)), thread_name_prefix="onnxruntime") as pool:
            out = list(pool.map(batch_logits, starts))
    else:
        out = [batch_logits(s) for s in starts]
    classes = session.get_outputs()[0].shape[-1]
    return np.concatenate(out) if out else np.zeros((0, classes if isinstance(classes, int) else 0), np.float32)
