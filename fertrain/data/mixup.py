"""Mixup and CutMix on a normalized batch, with timm's `Mixup` semantics ('batch' mode).

Each image is mixed with the batch's mirror (image i with image B-1-i) using one lambda per
batch drawn from Beta(alpha, alpha); with both mixup and cutmix on, cutmix is chosen with
probability `switch_prob`; the whole batch is mixed with probability `prob`. CutMix pastes one
box and corrects lambda to the box's actual area. Targets are the same mix of the two images'
(label-smoothed) target distributions, so they sum to 1.

Unlike timm, the draws come from a generator seeded by (seed, step): a resumed run mixes
exactly what an uninterrupted one would have, and nothing reads the global NumPy state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixupConfig:
    mixup: float = 0.0  # Beta alpha of mixup (0 = off)
    cutmix: float = 0.0  # Beta alpha of cutmix (0 = off)
    prob: float = 1.0  # probability of mixing a batch at all
    switch_prob: float = 0.5  # with both on: probability of cutmix instead of mixup

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup > 0 or self.cutmix > 0)


@dataclass(frozen=True)
class MixDraw:
    """What one batch gets: lambda (weight of the image itself) and, for cutmix, the pasted box."""

    lam: float
    box: tuple[int, int, int, int] | None = None  # y0, y1, x0, x1 in pixels of `size` x `size` images
    size: int = 0

    @property
    def identity(self) -> bool:
        return self.lam == 1.0


def draw_mix(cfg: MixupConfig, size: int, seed: int, step: int) -> MixDraw:
    """The mix for optimizer step `step` of a run seeded `seed` on `size` x `size` images."""
    if not cfg.active:
        return MixDraw(1.0)
    rng = np.random.default_rng([int(seed), int(step), 0x6D6978])  # independent of the augmentation stream
    if rng.random() >= cfg.prob:
        return MixDraw(1.0)
    use_cutmix = cfg.cutmix > 0 and (cfg.mixup == 0 or rng.random() < cfg.switch_prob)
    lam = float(rng.beta(cfg.cutmix, cfg.cutmix) if use_cutmix else rng.beta(cfg.mixup, cfg.mixup))
    if not use_cutmix:
        return MixDraw(lam)
    cut = math.sqrt(1.0 - lam)  # box side / image side, so the box covers 1 - lam of the area
    h = w = int(size * cut)
    cy, cx = int(rng.integers(0, size)), int(rng.integers(0, size))
    y0, y1 = max(cy - h // 2, 0), min(cy + h // 2, size)
    x0, x1 = max(cx - w // 2, 0), min(cx + w // 2, size)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(size * size)  # clipped at the border: the area pasted
    return MixDraw(lam, (y0, y1, x0, x1), size)


def mix_vector(draw: MixDraw) -> list[float]:
    """The draw as numbers, which `mix_images`/`mix_targets` read from a device tensor (no host
    branch, so a step captured as a CUDA graph replays each step's draw): [image lambda, 1 - it,
    target lambda, 1 - it, y0, y1, x0, x1], the box's edges as fractions of the image's side, so the
    same vector mixes any resampling of the batch (a student's online teacher at its own input size;
    mixup is linear, so mixing after resampling and normalization mixes the same faces). Mixup mixes
    pixels and targets by lambda; cutmix keeps the pixels (image lambda 1) outside the box, takes the
    partner's inside it and mixes the targets by the pasted area; no mix is lambda 1 and an empty box
    (the batch unchanged)."""
    if draw.box is None:
        return [draw.lam, 1.0 - draw.lam, draw.lam, 1.0 - draw.lam, 0.0, 0.0, 0.0, 0.0]
    return [1.0, 0.0, draw.lam, 1.0 - draw.lam, *(edge / draw.size for edge in draw.box)]


def mix_images(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The batch mixed with its mirror (B-1-i) as `v` (a `mix_vector`) says: a cutmix box takes the
    pixels whose centres lie inside it (at the size drawn for, exactly the box's pixels: a centre is
    half a pixel from every edge, far beyond float rounding)."""
    partner = x.flip(0)
    h, w = x.shape[-2:]
    ys = ((torch.arange(h, device=x.device) + 0.5) / h).view(h, 1)
    xs = ((torch.arange(w, device=x.device) + 0.5) / w).view(1, w)
    box = (ys > v[4]) & (ys < v[5]) & (xs > v[6]) & (xs < v[7])
    return torch.where(box, partner, x * v[0] + partner * v[1])


def mix_targets(targets: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-sample target distributions (B x K), or per-sample weights (B x 1), mixed like their images."""
    return targets * v[2] + targets.flip(0) * v[3]
