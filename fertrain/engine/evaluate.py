"""Evaluation: logits over a split, classification metrics, and temperature-scaled calibration."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fertrain.calibration import calibration_report, fit_temperature
from fertrain.data import PreprocessSpec, to_model_input
from fertrain.data.augment import uniform_size
from fertrain.data.preprocess import TTA_CROP, TTA_MODES
from fertrain.data.serving import softmax
from fertrain.engine.device import amp_dtype, autocast_for
from fertrain.labels import CLASS_NAMES, NUM_CLASSES


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The multi-crop views of a model-input batch (N x C x S x S): `five` = the four corners and the
    centre, each a TTA_CROP x TTA_CROP crop resized back to S (bilinear); `ten` = those and their
    mirror images."""
    s = x.shape[-1]
    k = max(1, round(s * TTA_CROP))
    origins = [(0, 0), (0, s - k), (s - k, 0), (s - k, s - k), ((s - k) // 2, (s - k) // 2)]
    views = [F.interpolate(x[:, :, y : y + k, x0 : x0 + k].float(), size=(s, s), mode="bilinear",
                           align_corners=False).to(x.dtype) for y, x0 in origins]  # fmt: skip
    if mode == "ten":
        views += [torch.flip(v, dims=[3]) for v in views]
    return views


def tta_logits(model: torch.nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Serving logits of a batch under test-time augmentation `mode` (TTA_MODES).

    flip: the mean of the face's and its mirror's logits. five/ten: the views' softmax
    probabilities averaged, returned as log-probabilities (logits of the averaged distribution,
    so temperature scaling and argmax work on them as on any logits)."""
    if mode == "none":
        return model(x).float()
    if mode == "flip":
        return (model(x).float() + model(torch.flip(x, dims=[3])).float()) / 2
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; expected one of {', '.join(TTA_MODES)}")
    probs = torch.stack([torch.softmax(model(v).float(), dim=1) for v in tta_views(x, mode)]).mean(0)
    return torch.log(probs.clamp_min(1e-12))


@torch.no_grad()
def collect_logits(
    model: torch.nn.Module, loader: DataLoader | Iterable[tuple], device: torch.device, spec: PreprocessSpec, *,
    amp: bool = False, channels_last: bool = False, tta: str = "none", on_batch: Callable[[int], None] | None = None,
    fused: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Serving logits (no margin), labels and row positions for every sample of `loader` (a face
    DataLoader, or the device-resident batches of `ResidentFaces.eval_batches`: the same tuples).

    `tta`: test-time augmentation (`tta_logits`). Logits stay on the device until the end: one
    copy to the host instead of a GPU sync per batch. (Copying and resizing on a side stream, to
    overlap the previous forward pass, measured no gain on an H200.) `on_batch(n)` is called as
    each batch is queued (a progress bar's advance). `fused`: `to_model_input`'s compiled input
    preparation. Off by default: compiling costs seconds in every new process (6.7 s on an H100)
    and saves well under a millisecond per batch, so one pass over a split (evaluate, calibrate,
    export-softlabels, predict) never earns it back.
    """
    model.eval()
    out, labels, index = [], [], []
    # under AMP the input is produced directly in the compute dtype (saves a full-size cast per batch)
    in_dtype = amp_dtype(device) if amp else torch.float32
    for x, sizes, host_sizes, y, _soft, idx in loader:
        native = uniform_size(host_sizes)  # on the host copy: no device sync
        # non_blocking for sizes too: a blocking copy syncs the stream every batch (measured: 70 % of host time)
        x = to_model_input(x.to(device, non_blocking=True), sizes.to(device, non_blocking=True), spec.img_size,
                           spec.mean, spec.std, channels_last, fused=fused, dtype=in_dtype, native=native)  # fmt: skip
        with autocast_for(device, amp):
            logits = tta_logits(model, x, tta)
        out.append(logits.float())
        if on_batch is not None:
            on_batch(len(y))
        labels.append(y)
        index.append(idx)
    return torch.cat(out).cpu().numpy(), torch.cat(labels).cpu().numpy(), torch.cat(index).cpu().numpy()


def macro_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present with both outcomes."""
    from sklearn.metrics import roc_auc_score

    probs = softmax(np.asarray(logits, np.float64))
    present = [c for c in range(probs.shape[1]) if 0 < (labels == c).sum() < len(labels)]
    scores = [roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(scores)) if scores else float("nan")


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, macro-F1, macro AUC, per-class precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    pred = logits.argmax(1)
    classes = list(range(NUM_CLASSES))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    return {
        "n": len(labels),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=[c for c in classes if (labels == c).any()], average="macro",
                                   zero_division=0)),
        "per_class": {CLASS_NAMES[c]: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                                       "support": int(s[c])} for c in classes},
        "confusion_matrix": confusion_matrix(labels, pred, labels=classes).tolist(),
        "auc": macro_auc(logits, labels),
    }  # fmt: skip


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Metrics plus a temperature fitted on these logits, with raw and scaled ECE/Brier/NLL."""
    import sklearn

    # our own arrays, well-formed by construction: sklearn's per-call argument validation was a
    # third of the metrics' host time, paid twice per epoch with EMA
    with sklearn.config_context(skip_parameter_validation=True):
        metrics = classification_metrics(logits, labels)
    fit = fit_temperature(logits, labels)
    raw = calibration_report(logits, labels, 1.0, n_bins)
    scaled = calibration_report(logits, labels, fit.temperature, n_bins)
    metrics["nll"] = raw["nll"]
    metrics["calibration"] = {"fit": fit.to_dict(), "raw": raw, "scaled": scaled, "n_bins": n_bins}
    return metrics
