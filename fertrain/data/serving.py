"""The evaluation input of prepared faces and its test-time augmentation in NumPy and OpenCV, for
serving ONNX models without loading torch (importing torch alone costs ~1.3 s of a `fertrain
predict` command on a 2-core machine).

The values are those of the PyTorch evaluation path (`to_model_input`, `tta_views`,
`tta_logits`) to float rounding: a bilinear resample with half-pixel centres and edge clamping
(OpenCV's INTER_LINEAR on float32 samples the same points as `F.interpolate(align_corners=False)`),
/255, then (x - mean) / std. tests/test_deploy.py checks them against each other.
"""

from __future__ import annotations

import cv2
import numpy as np

from fertrain.data.preprocess import TTA_CROP, TTA_MODES, PreprocessSpec


def model_input(faces: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Prepared uint8 hxwx3 faces (`prepare_face`) -> float32 N x 3 x S x S, normalized.

    A grey face (three equal channels, as every face of a grey model is) is resized once and
    copied to the other planes; the normalization then runs per channel over the whole batch in
    place. Same operations per pixel as resizing and normalizing each face as HxWx3 (bit for bit),
    in a fifth of the time (0.11 -> 0.023 ms per 48-px face at 112 px; it bounded `fertrain predict`)."""
    s = spec.img_size
    out = np.empty((len(faces), 3, s, s), np.float32)
    for i, face in enumerate(faces):
        grey = np.array_equal(face[..., 0], face[..., 1]) and np.array_equal(face[..., 0], face[..., 2])
        for c in range(1 if grey else 3):
            plane = face[..., c].astype(np.float32)
            out[i, c] = plane if plane.shape == (s, s) else cv2.resize(plane, (s, s), interpolation=cv2.INTER_LINEAR)
        if grey:
            out[i, 1:] = out[i, 0]
    for c, (mean, std) in enumerate(zip(spec.mean, spec.std, strict=True)):
        plane = out[:, c]
        plane /= np.float32(255.0)
        plane -= np.float32(mean)
        plane /= np.float32(std)
    return out


def tta_views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of a model-input batch whose outputs `merge_views` combines: the batch itself
    (`none`), it and its mirror (`flip`), the four corner and the centre crops resized back
    (`five`), and their mirrors too (`ten`)."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, np.ascontiguousarray(x[..., ::-1])]
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_MODES)}")
    s = x.shape[-1]
    k = max(1, round(s * TTA_CROP))
    origins = [(0, 0), (0, s - k), (s - k, 0), (s - k, s - k), ((s - k) // 2, (s - k) // 2)]
    views = []
    for y, x0 in origins:
        crops = x[:, :, y : y + k, x0 : x0 + k].transpose(0, 2, 3, 1)
        views.append(np.stack([cv2.resize(np.ascontiguousarray(c), (s, s), interpolation=cv2.INTER_LINEAR)
                               for c in crops]).transpose(0, 3, 1, 2).copy())  # fmt: skip
    if mode == "ten":
        views += [np.ascontiguousarray(v[..., ::-1]) for v in views]
    return views


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def merge_views(outputs: list[np.ndarray], mode: str) -> np.ndarray:
    """Serving logits from the views' logits, as `tta_logits` merges them: `flip` averages logits;
    `five`/`ten` average the softmax probabilities and return their log."""
    outputs = [o.astype(np.float32) for o in outputs]
    if mode in ("none", "flip"):
        return np.mean(outputs, axis=0, dtype=np.float32) if len(outputs) > 1 else outputs[0]
    probs = np.mean([softmax(o) for o in outputs], axis=0)
    return np.log(np.clip(probs, 1e-12, None)).astype(np.float32)


def calibrated_probs(logits: np.ndarray, temperature: float | list[float]) -> np.ndarray:
    """softmax(logits / T) in float64, T a scalar or one per class."""
    return softmax(np.asarray(logits, np.float64) / np.asarray(temperature, np.float64))
