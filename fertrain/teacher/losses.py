"""Teacher loss: cross-entropy with label smoothing, soft targets when the manifest has them,
optional class weights against imbalance, mixup/cutmix targets."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fertrain.data.mixup import mix_targets
from fertrain.errors import ConfigError

CLASS_WEIGHT_MODES = ("none", "inverse", "effective")


def class_weights(labels: np.ndarray, num_classes: int, mode: str, beta: float = 0.999) -> torch.Tensor | None:
    """Per-class weights, normalized to mean 1 over the classes present.

    inverse: 1/n_c. effective: (1-beta)/(1-beta^n_c) (Cui et al. 2019, effective number of samples).
    """
    if mode == "none":
        return None
    if mode not in CLASS_WEIGHT_MODES:
        raise ConfigError(f"--class-weights {mode!r}; expected one of {', '.join(CLASS_WEIGHT_MODES)}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_classes)
    if mode == "inverse":
        w[present] = 1.0 / counts[present]
    else:
        w[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    w[present] *= present.sum() / w[present].sum()
    return torch.tensor(w, dtype=torch.float32)


def target_distribution(labels: torch.Tensor, soft: torch.Tensor | None, num_classes: int,
                        smoothing: float) -> torch.Tensor:  # fmt: skip
    """Soft target where a row has one (no NaN), else the smoothed one-hot of its label."""
    onehot = torch.zeros(labels.shape[0], num_classes, device=labels.device).scatter_(1, labels.view(-1, 1), 1.0)
    hard = onehot * (1.0 - smoothing) + smoothing / num_classes  # scatter: F.one_hot would sync the GPU
    if soft is None:
        return hard
    has_soft = ~torch.isnan(soft).any(dim=1, keepdim=True)
    return torch.where(has_soft, torch.nan_to_num(soft), hard)


def teacher_loss(logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None, *, smoothing: float = 0.0,
                 weights: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Weighted mean over the batch of -sum_k t_k log p_k (equals F.cross_entropy for hard targets).

    With a mixup/cutmix draw (`mix_vector` on the device) the targets and class weights are mixed
    like the images were."""
    t = target_distribution(labels, soft, logits.shape[1], smoothing)
    if mix is not None:
        t = mix_targets(t, mix)
    per_sample = F.cross_entropy(logits.float(), t, reduction="none")  # probability targets
    if weights is None:
        return per_sample.mean()
    w = weights.to(logits.device)[labels]
    if mix is not None:
        w = mix_targets(w.view(-1, 1), mix).view(-1)
    return (per_sample * w).sum() / w.sum()
