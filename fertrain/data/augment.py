"""Batched augmentation and normalization on the training device (GPU when present, else CPU).

One code path for both: uint8 NCHW in, normalized float out. Every random draw comes from a
generator seeded by (seed, global_step), so augmentation is reproducible and a resumed run
draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.6, 1.0)  # random resized crop, area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    erasing: float = 0.25  # probability of one random-erasing rectangle per image
    erasing_area: tuple[float, float] = (0.02, 0.2)

    def to_dict(self) -> dict:
        return asdict(self)


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) * 1_000_003 + int(step))
    return g


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _resample(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, sx, sy, cx, cy, flip) -> torch.Tensor:
    """One bilinear resample of each face's valid region (top-left h x w of the canvas) to out x out.

    (sx, sy) is the crop size and (cx, cy) its centre in the face's own [-1, 1] coordinates;
    flip is +1 or -1. With sx = sy = 1, cx = cy = 0 it is a plain resize of the face.
    """
    b, _, c, _ = x_uint8.shape
    rh = sizes[:, 0].to(torch.float32) / c
    rw = sizes[:, 1].to(torch.float32) / c
    theta = torch.zeros(b, 2, 3, device=x_uint8.device)
    theta[:, 0, 0] = sx * flip * rw
    theta[:, 0, 2] = cx * rw + rw - 1
    theta[:, 1, 1] = sy * rh
    theta[:, 1, 2] = cy * rh + rh - 1
    grid = F.affine_grid(theta, [b, 3, out, out], align_corners=False)
    return F.grid_sample(x_uint8.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_model_input(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, mean, std,
                   channels_last: bool = False) -> torch.Tensor:  # fmt: skip
    """Evaluation path: resize each face to out x out, /255, normalize; nothing random."""
    b = x_uint8.shape[0]
    if x_uint8.shape[-1] == out and bool((sizes == out).all()):
        x = x_uint8.float()
    else:
        one = torch.ones(b, device=x_uint8.device)
        zero = torch.zeros(b, device=x_uint8.device)
        x = _resample(x_uint8, sizes.to(x_uint8.device), out, one, one, zero, zero, one)
    x = normalize(x.div_(255.0), mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment_batch(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, cfg: AugmentConfig, mean, std,
                  g: torch.Generator, channels_last: bool = False) -> torch.Tensor:  # fmt: skip
    """Random resized crop + flip + resize (one resample), colour jitter, normalize, erasing."""
    b = x_uint8.shape[0]
    dev = x_uint8.device

    def u(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return torch.rand(n, generator=g, device=dev) * (hi - lo) + lo

    area = u(*cfg.scale)
    log_r = u(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    sx = torch.sqrt(area * log_r.exp()).clamp(max=1.0)  # crop width / face width
    sy = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sx)
    cy = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(b, generator=g, device=dev) < cfg.hflip, -1.0, 1.0)
    x = _resample(x_uint8, sizes.to(dev), out, sx, sy, cx, cy, flip).div_(255.0)

    bright = u(1 - cfg.brightness, 1 + cfg.brightness).view(b, 1, 1, 1)
    contrast = u(1 - cfg.contrast, 1 + cfg.contrast).view(b, 1, 1, 1)
    sat = u(1 - cfg.saturation, 1 + cfg.saturation).view(b, 1, 1, 1)
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    x = x * bright
    mean_gray = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean_gray) * contrast + mean_gray
    gray = (x * gray_w).sum(1, keepdim=True)
    x = ((x - gray) * sat + gray).clamp_(0.0, 1.0)
    x = normalize(x, mean, std)

    if cfg.erasing > 0:
        h = w = out
        e_area = u(*cfg.erasing_area)
        e_ratio = u(math.log(0.3), math.log(3.3)).exp()
        eh = (torch.sqrt(e_area * e_ratio) * h).clamp(1, h)
        ew = (torch.sqrt(e_area / e_ratio) * w).clamp(1, w)
        y0 = torch.rand(b, generator=g, device=dev) * (h - eh)
        x0 = torch.rand(b, generator=g, device=dev) * (w - ew)
        on = (torch.rand(b, generator=g, device=dev) < cfg.erasing).view(b, 1, 1)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        mask = on & (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) \
            & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))  # fmt: skip
        fill = torch.randn(b, 3, 1, 1, generator=g, device=dev)  # one random value per channel
        x = torch.where(mask.unsqueeze(1), fill, x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
