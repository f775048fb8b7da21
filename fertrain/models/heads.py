"""Classification heads on backbone features.

ArcFace: L2-normalized features and class weights, logits s·cos θ. During training the
target class gets the additive angular margin, s·cos(θ + m); evaluation, calibration and
export always use s·cos θ (margin 0), so the served model is the plain cosine classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ArcFaceHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, s: float = 30.0):
        super().__init__()
        self.s = s
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
        cos = self.cosine(features)
        if labels is None or margin <= 0:
            return self.s * cos
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-7))
        cos_m = cos * math.cos(margin) - sin * math.sin(margin)  # cos(θ + m)
        # Past θ = π - m, cos(θ + m) would increase again; use the standard linear fallback.
        cos_m = torch.where(cos > math.cos(math.pi - margin), cos_m, cos - math.sin(math.pi - margin) * margin)
        # scatter, not F.one_hot: one_hot validates labels on the host, a device sync every step
        target = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, labels.view(-1, 1), True)
        return self.s * torch.where(target, cos_m, cos)


class LinearHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
        return self.fc(features)


HEADS = {"arcface": ArcFaceHead, "linear": LinearHead}
