"""Deterministic epoch order: a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one. `balanced_min_per_class` oversamples rare classes."""

from __future__ import annotations

import numpy as np


def epoch_order(labels: np.ndarray, *, seed: int, epoch: int, balanced_min_per_class: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, epoch])
    idx = [np.arange(len(labels))]
    if balanced_min_per_class > 0:
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            missing = balanced_min_per_class - len(members)
            if missing > 0:
                idx.append(rng.choice(members, size=missing, replace=True))
    order = np.concatenate(idx)
    return order[rng.permutation(len(order))]


def epoch_length(labels: np.ndarray, balanced_min_per_class: int = 0) -> int:
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return int(len(labels) + np.clip(balanced_min_per_class - counts, 0, None).sum())
