"""TrivialAugment-style ops for faces, batched with one op and magnitude per image.

TrivialAugment (Müller & Hutter, 2021) gives each image one op drawn uniformly from a list, at a
magnitude drawn uniformly, with nothing to tune. Here the list leaves out what fertrain's
augmentation already draws on its own (rotation, translation, brightness, contrast, colour) and
keeps what suits grey faces. Magnitudes come as m in [-1, 1] (the sign matters for shear,
gamma and sharpness; the others use |m|) and map to RandAugment's ranges:

    identity
    shear_x, shear_y   shear of up to 0.3 (applied in the crop's resample, see `shear_of`)
    autocontrast       each channel stretched to [0, 1]
    equalize           histogram equalization of each channel (torchvision's algorithm)
    gamma              x ** 2**m, gamma from 0.5 to 2
    sharpness          torchvision's adjust_sharpness, factor 1 + 0.9 m (0.1 blurs, 1.9 sharpens)
    posterize          8 down to 4 bits
    solarize           pixels above 1 - |m| inverted

Each photometric op matches its torchvision function (autocontrast, equalize, adjust_gamma,
adjust_sharpness, posterize, solarize) on one image (tests check it), but runs on the whole
batch at once with per-image magnitudes, inside the compiled augmentation and the CUDA graph:
no host sync, no data-dependent shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPS = ("identity", "shear_x", "shear_y", "autocontrast", "equalize", "gamma", "sharpness", "posterize", "solarize")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
MAX_SHEAR = 0.3
MAX_SHARPNESS = 0.9
MAX_POSTERIZE_BITS_REMOVED = 4


def draw_ops(u_on: torch.Tensor, u_op: torch.Tensor, u_mag: torch.Tensor, prob: float) -> torch.Tensor:
    """(b, 2) columns: op index (0 = identity, also where the image draws no op) and magnitude in [-1, 1]."""
    op = torch.where(u_on < prob, (u_op * len(OPS)).floor().clamp(max=len(OPS) - 1), 0.0)
    return torch.stack([op, u_mag * 2 - 1], dim=1)


def shear_of(op: torch.Tensor, mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(shx, shy): the output's coordinates (u, v) are sampled at (u + shx v, v + shy u) before the crop."""
    shear = mag * MAX_SHEAR
    zero = torch.zeros_like(shear)
    return (torch.where(op == OP_INDEX["shear_x"], shear, zero), torch.where(op == OP_INDEX["shear_y"], shear, zero))


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1.0 / (hi - lo).clamp_min(1e-12))
    return ((x - torch.where(flat, torch.zeros_like(lo), lo)) * scale).clamp(0.0, 1.0)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision's `equalize` per channel of each image, on the image quantized to 8 bits."""
    b, c, h, w = x.shape
    q = (x * 255).round().clamp(0, 255).to(torch.int64).view(b * c, h * w)
    # int32 counts: the histogram is atomic adds into 256 bins per image, and 32-bit atomics are the fast ones
    ones = torch.ones_like(q, dtype=torch.int32)
    hist = torch.zeros(b * c, 256, dtype=torch.int32, device=x.device).scatter_add_(1, q, ones)
    last = 255 - (hist.flip(1) > 0).to(torch.int64).argmax(dim=1, keepdim=True)  # the last non-empty bin
    step = torch.div(h * w - hist.gather(1, last), 255, rounding_mode="floor")
    safe = step.clamp_min(1)
    lut = torch.div(hist.cumsum(1) + torch.div(safe, 2, rounding_mode="floor"), safe, rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, q), q)  # one value (or one value and a few): unchanged
    return out.view(b, c, h, w).to(x.dtype) / 255.0


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    blurred = x.clone()
    blurred[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)  # the border keeps its pixels, as in PIL
    return (factor * x + (1 - factor) * blurred).clamp(0.0, 1.0)


def _posterize(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    q = (x * 255).round().clamp(0, 255)
    step = torch.pow(2.0, removed)
    return (q / step).floor() * step / 255.0


def _gamma(x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0.0).pow(torch.pow(2.0, mag))


def _posterize_by(x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    return _posterize(x, (mag.abs() * (MAX_POSTERIZE_BITS_REMOVED + 1)).floor().clamp(max=MAX_POSTERIZE_BITS_REMOVED))


def _solarize(x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 1 - mag.abs(), 1 - x, x)


# each photometric op of OPS on a batch x (b, c, h, w in [0, 1]) at per-image magnitudes mag (b, 1, 1, 1)
PHOTOMETRIC = {
    "autocontrast": lambda x, mag: _autocontrast(x),
    "equalize": lambda x, mag: _equalize(x),
    "gamma": _gamma,
    "sharpness": lambda x, mag: _sharpness(x, 1 + MAX_SHARPNESS * mag),
    "posterize": _posterize_by,
    "solarize": _solarize,
}


def apply_photometric(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Each image of x (b, c, h, w in [0, 1]) through its drawn op; shear and identity leave it as is."""
    view = (-1, 1, 1, 1)
    op, mag = op.view(view), mag.view(view)
    candidates = {name: fn(x, mag) for name, fn in PHOTOMETRIC.items()}  # whole batch: no data-dependent shapes
    out = x
    for name, result in candidates.items():
        out = torch.where(op == OP_INDEX[name], result, out)
    return out
