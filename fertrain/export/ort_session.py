"""Serving logits of an onnxruntime session over prepared faces, with NumPy and OpenCV only (no
torch: `fertrain predict` on an ONNX model never loads it). The int8 exporter's accuracy check
and `fertrain predict` both call `session_logits`, so the check measures what is served."""

from __future__ import annotations

import numpy as np

from fertrain.data.preprocess import PreprocessSpec
from fertrain.data.serving import merge_views, model_input, tta_views


def session_logits(session, prepared: list[np.ndarray], spec: PreprocessSpec, *, tta: str = "none",
                   batch_size: int = 64) -> np.ndarray:  # fmt: skip
    """Logits of faces already prepared by `prepare_face` (uint8 hxwx3), `batch_size` per call;
    `tta` as in `fertrain.engine.evaluate.tta_logits`."""
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(prepared), batch_size):
        x = model_input(prepared[start : start + batch_size], spec)
        out.append(merge_views([session.run(None, {name: v})[0] for v in tta_views(x, tta)], tta))
    classes = session.get_outputs()[0].shape[-1]
    return np.concatenate(out) if out else np.zeros((0, classes if isinstance(classes, int) else 0), np.float32)
