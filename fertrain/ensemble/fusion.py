"""Weighted probability fusion of teachers, and the search for the weights.

fused = softmax(log(sum_i w_i softmax(z_i / T_i)) / fusion_t): each member's calibrated T
first, then the weighted average of probabilities; fusion_t = 1 leaves it unchanged.
Fused "logits" are log(fused) so that everything downstream (calibration, evaluation) keeps
taking logits.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from sklearn.metrics import f1_score

from fertrain.calibration import nll
from fertrain.calibration.temperature import scale_logits
from fertrain.data.serving import calibrated_probs
from fertrain.errors import ConfigError

OBJECTIVES = ("macro_f1", "nll")


def member_probs(logits, temperature):
    """softmax(z / T) per member. numpy in, numpy out (float64); a tensor in, a tensor out on its
    device (the online student teacher fuses on the GPU with this same code)."""
    if isinstance(logits, torch.Tensor):
        return torch.softmax(scale_logits(logits, temperature), dim=1)
    return calibrated_probs(logits, temperature)


def fuse(probs: list, weights: list[float], fusion_t: float = 1.0):
    """Fused log-probabilities (usable as logits) from per-member calibrated probabilities;
    numpy arrays or tensors, returned as given."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"ensemble weights {weights} must be non-negative, one per member, not all zero")
    if not isinstance(probs[0], torch.Tensor):
        return fuse([torch.as_tensor(p, dtype=torch.float64) for p in probs], weights, fusion_t).numpy()
    mix = sum(float(wi / w.sum()) * p for wi, p in zip(w, probs, strict=True))
    fused = torch.log_softmax(torch.log(mix.clamp(1e-12, 1.0)) / fusion_t, dim=1)
    return fused.clamp_min(math.log(1e-12))


def score(fused_logits: np.ndarray, labels: np.ndarray, objective: str) -> float:
    """Higher is better for both objectives (NLL is negated)."""
    if objective == "macro_f1":
        present = sorted(set(labels.tolist()))
        return float(f1_score(labels, fused_logits.argmax(1), labels=present, average="macro", zero_division=0))
    return -nll(fused_logits, labels)


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    k = round(1 / step)
    return [(*tuple(c / k for c in combo), (k - sum(combo)) / k)
            for combo in itertools.product(range(k + 1), repeat=n - 1) if sum(combo) <= k]  # fmt: skip


def search_weights(probs: list[np.ndarray], labels: np.ndarray, *, objective: str = "macro_f1", step: float = 0.05,
                   fusion_t: float = 1.0, rounds: int = 3) -> tuple[list[float], list[dict]]:  # fmt: skip
    """Best weights on the simplex and the table searched: a full grid for 2-3 members,
    coordinate search (one weight at a time on the same grid, renormalized) for more."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    n = len(probs)
    table: list[dict] = []

    def evaluate(w: tuple[float, ...]) -> float:
        if sum(w) <= 0:
            return -np.inf
        s = score(fuse(probs, list(w), fusion_t), labels, objective)
        table.append({"weights": [round(x, 4) for x in w], objective: s if objective == "macro_f1" else -s})
        return s

    if n == 1:
        return [1.0], [{"weights": [1.0]}]
    if n <= 3:
        best = max(simplex_grid(n, step), key=evaluate)
        return [float(w) for w in best], table
    current = tuple([1.0 / n] * n)
    best_score = evaluate(current)
    for _ in range(rounds):
        improved = False
        for i in range(n):
            for v in np.arange(0, 1 + 1e-9, step):
                rest = sum(current) - current[i]
                if rest <= 0:
                    continue
                cand = tuple(v if j == i else current[j] * (1 - v) / rest for j in range(n))
                s = evaluate(cand)
                if s > best_score + 1e-12:
                    current, best_score, improved = cand, s, True
        if not improved:
            break
    return [float(w) for w in current], table  # plain floats: numpy's repr reads as markup to rich
