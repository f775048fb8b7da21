"""How an ensemble's members agree on one split: what fusing them can and cannot buy.

Fusion averages the members' probabilities, so it mostly decides the faces on which they
disagree; a face every member labels wrong is seldom rescued, and members that agree on
nearly every face fuse to little more than one of them. Reported by `fertrain evaluate ENS.json`
under the same --tta as the ensemble's own numbers.
"""

from __future__ import annotations

import itertools

import numpy as np


def member_agreement(member_logits: list[np.ndarray], labels: np.ndarray) -> dict:
    """Each member's accuracy; the share of faces no member labels right (`all_wrong`), at least one
    does (`any_right`: what picking the right member per face would reach) and all do; and how
    often two members give the same label, averaged over the pairs."""
    labels = np.asarray(labels)
    predictions = np.stack([np.asarray(logits).argmax(1) for logits in member_logits])
    right = predictions == labels
    pairs = [float((predictions[i] == predictions[j]).mean())
             for i, j in itertools.combinations(range(len(predictions)), 2)]  # fmt: skip
    return {
        "accuracy": [float(r.mean()) for r in right],
        "all_wrong": float((~right.any(0)).mean()), "any_right": float(right.any(0).mean()),
        "all_right": float(right.all(0).mean()),
        "pairwise_agreement": float(np.mean(pairs)) if pairs else 1.0,
    }  # fmt: skip
