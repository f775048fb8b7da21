"""Batched augmentation and normalization on the training device (GPU when present, else CPU).

One code path for both: uint8 NCHW in, normalized float out. Every random draw comes from a
generator seeded by (seed, global_step), so augmentation is reproducible and a resumed run
draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from fertrain.data.trivial_augment import apply_photometric, draw_ops, shear_of
from fertrain.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.6, 1.0)  # random resized crop, area fraction (> 1: zoom out, border padding)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    erasing: float = 0.25  # probability of one random-erasing rectangle per image
    erasing_area: tuple[float, float] = (0.02, 0.2)
    rotate: float = 0.0  # random rotation, uniform in +-rotate degrees (0 = none)
    translate: float = 0.0  # random shift of the crop, uniform in +-translate of the face's size (0 = none)
    trivial: float = 0.0  # probability of one TrivialAugment-style op per image (`trivial_augment`; 0 = none)

    def to_dict(self) -> dict:
        return asdict(self)


SCALAR_LIMITS = {"rotate": 180.0}  # scalars that are not probabilities or fractions


def augment_config(overrides: dict | None, where: str = "augment") -> AugmentConfig:
    """AugmentConfig from a mapping of overrides, each key and value checked (ConfigError naming it)."""
    overrides = dict(overrides or {})
    defaults = AugmentConfig()
    unknown = sorted(set(overrides) - set(defaults.to_dict()))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; expected "
                          f"{', '.join(defaults.to_dict())}")  # fmt: skip
    values = {}
    for key, value in overrides.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            ok = (isinstance(value, list | tuple) and len(value) == 2
                  and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))  # fmt: skip
            if not ok or not 0 <= value[0] <= value[1] or not math.isfinite(value[1]):
                raise ConfigError(f"{where}.{key}: expected [low, high] with 0 <= low <= high, got {value!r}")
            values[key] = (float(value[0]), float(value[1]))
        else:
            top = SCALAR_LIMITS.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
                raise ConfigError(f"{where}.{key}: expected a number from 0 to {top:g}, got {value!r}")
            values[key] = float(value)
    return AugmentConfig(**values)


def step_seed(seed: int, step: int) -> int:
    """The seed of the augmentation draws of micro-batch `step` of a run seeded `seed`."""
    return int(seed) * 1_000_003 + int(step)


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(seed, step))
    return g


def _resample(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, sx, sy, cx, cy, flip,
              cos=None, sin=None, shear=None) -> torch.Tensor:  # fmt: skip
    """One bilinear resample of each face's valid region (top-left h x w of the canvas) to out x out.

    (sx, sy) is the crop size and (cx, cy) its centre in the face's own [-1, 1] coordinates;
    flip is +1 or -1; (cos, sin) of the crop's rotation about its centre (default: none); `shear`
    (shx, shy) samples the output's (u, v) at (u + shx v, v + shy u) (default: none). With
    sx = sy = 1, cx = cy = 0 it is a plain resize of the face.
    """
    b, _, c, _ = x_uint8.shape
    rh = sizes[:, 0].to(torch.float32) / c
    rw = sizes[:, 1].to(torch.float32) / c
    theta = torch.zeros(b, 2, 3, device=x_uint8.device)
    if cos is None:
        theta[:, 0, 0] = sx * flip * rw
        theta[:, 1, 1] = sy * rh
    else:  # source = R(angle) . (flip * sx * u, sy * v) + centre, in the face's coordinates
        theta[:, 0, 0] = cos * sx * flip * rw
        theta[:, 0, 1] = -sin * sy * rw
        theta[:, 1, 0] = sin * sx * flip * rh
        theta[:, 1, 1] = cos * sy * rh
    if shear is not None:  # added terms only, so a zero shear leaves every other draw's matrix bit for bit
        if cos is None:
            raise ValueError("_resample: a shear is applied with the crop's rotation (cos, sin)")
        shx, shy = shear
        theta[:, 0, 0] = theta[:, 0, 0] - sin * sy * shy * rw
        theta[:, 0, 1] = theta[:, 0, 1] + cos * sx * flip * shx * rw
        theta[:, 1, 0] = theta[:, 1, 0] + cos * sy * shy * rh
        theta[:, 1, 1] = theta[:, 1, 1] + sin * sx * flip * shx * rh
    theta[:, 0, 2] = cx * rw + rw - 1
    theta[:, 1, 2] = cy * rh + rh - 1
    grid = F.affine_grid(theta, [b, 3, out, out], align_corners=False)
    return F.grid_sample(x_uint8.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def _eval_input(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, consts: torch.Tensor, dtype: torch.dtype,
                channels_last: bool, native: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
    if native is not None:  # every face of the batch has this size: a plain resize of the valid region
        x = x_uint8[:, :, : native[0], : native[1]].float()
        if native != (out, out):
            x = F.interpolate(x, size=(out, out), mode="bilinear", align_corners=False)
        x = x / 255.0
    else:
        b = x_uint8.shape[0]
        one = torch.ones(b, device=x_uint8.device)
        zero = torch.zeros(b, device=x_uint8.device)
        x = _resample(x_uint8, sizes, out, one, one, zero, zero, one) / 255.0
    x = ((x - consts[0].view(1, 3, 1, 1)) / consts[1].view(1, 3, 1, 1)).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


_compiled_eval = None


def compile_repeatably(fn):
    """torch.compile with Inductor's deterministic mode (where this torch has it). Without it Inductor picks each
    reduction's block sizes by timing the candidates on the first call, and the race is close enough that other
    work on the GPU decides it; the sums (a face's mean grey level, the TrivialAugment ops' statistics) then add
    up in another order, and a seed's run drifts from its first epoch on. Measured on an H100: the same batches
    came out one way in 6 of 7 processes alone, the other way in 12 of 12 processes sharing the GPU; with the
    mode, the same in every process and no slower (docs/engine.md, "Repeatable runs")."""
    options = {"deterministic": True} if "deterministic" in torch._inductor.list_options() else None
    return torch.compile(fn, dynamic=None, options=options)


def uniform_size(sizes: torch.Tensor) -> tuple[int, int] | None:
    """(h, w) when every face of a batch has the same size, else None. Call it on the host copy."""
    if sizes.device.type != "cpu" or len(sizes) == 0:
        return None
    first = sizes[0]
    return (int(first[0]), int(first[1])) if bool((sizes == first).all()) else None


def to_model_input(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, mean, std,
                   channels_last: bool = False, fused: bool | None = None,
                   dtype: torch.dtype = torch.float32,
                   native: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
    """Evaluation path: resize each face to out x out, /255, normalize; nothing random.

    A plain bilinear resample (identity crop); an img_size face comes back unchanged. `native`
    (from `uniform_size` on the host sizes) says every face has one size: then the resize is one
    `interpolate` of the valid region, which samples the same points as the per-face
    `grid_sample` (half-pixel centres, edge clamp) at a fraction of its cost. `fused` (default:
    on CUDA) runs it through torch.compile, as the training augmentation does, and writes the
    result once in its final dtype and layout (bf16 channels-last under AMP): no float32 copy,
    no layout copy, no autocast cast in the first convolution.
    """
    global _compiled_eval
    fn = _eval_input
    if fused if fused is not None else x_uint8.device.type == "cuda":
        if _compiled_eval is None:
            _compiled_eval = compile_repeatably(_eval_input)
        fn = _compiled_eval
    return fn(x_uint8, sizes.to(x_uint8.device, non_blocking=True), out, _consts(tuple(mean), tuple(std),
              x_uint8.device), dtype, channels_last, native)  # fmt: skip


# Columns of the per-sample parameter matrix drawn by `sample_augment_params`.
P_SX, P_SY, P_CX, P_CY, P_FLIP, P_BRIGHT, P_CONTRAST, P_SAT, P_EH, P_EW, P_EY, P_EX, P_EON, P_ANGLE = range(14)
N_UNIFORM = 14  # uniforms drawn per sample (one torch.rand call per batch)
P_FILL = slice(N_UNIFORM, N_UNIFORM + 3)  # the erasing fill values
P_OP, P_MAG = N_UNIFORM + 3, N_UNIFORM + 4  # with `trivial` only: the TrivialAugment op and its magnitude


def sample_augment_params(b: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Every random draw of one batch in one (b, 17) tensor: 14 scalars + 3 erasing fill values
    (+ the TrivialAugment op and magnitude with `trivial`: (b, 19)).

    Two kernel launches per batch instead of one per parameter.
    """
    r = torch.rand(b, N_UNIFORM, generator=g, device=device)
    fill = torch.randn(b, 3, generator=g, device=device)  # one random value per channel

    def span(col: int, lo: float, hi: float) -> torch.Tensor:
        return r[:, col] * (hi - lo) + lo

    area = span(0, *cfg.scale)
    log_r = span(1, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    widest = max(1.0, math.sqrt(cfg.scale[1]))  # a crop stays inside the face unless the scale zooms out
    sx = torch.sqrt(area * log_r.exp()).clamp(max=widest)  # crop width / face width
    sy = torch.sqrt(area / log_r.exp()).clamp(max=widest)
    e_area = span(8, *cfg.erasing_area)
    e_ratio = span(9, math.log(0.3), math.log(3.3)).exp()
    cols = [
        sx, sy, (r[:, 2] * 2 - 1) * (1 - sx), (r[:, 3] * 2 - 1) * (1 - sy),
        torch.where(r[:, 4] < cfg.hflip, -1.0, 1.0),
        span(5, 1 - cfg.brightness, 1 + cfg.brightness), span(6, 1 - cfg.contrast, 1 + cfg.contrast),
        span(7, 1 - cfg.saturation, 1 + cfg.saturation),
        torch.sqrt(e_area * e_ratio), torch.sqrt(e_area / e_ratio),  # erasing height, width (fractions)
        r[:, 10], r[:, 11],  # erasing position
        (r[:, 12] < cfg.erasing).float(),
        (r[:, 13] * 2 - 1) * math.radians(cfg.rotate),  # rotation angle
    ]  # fmt: skip
    if cfg.translate:  # drawn after the others, so runs without it keep their draws
        shift = (torch.rand(b, 2, generator=g, device=device) * 2 - 1) * (2 * cfg.translate)  # [-1, 1] spans the face
        cols[2], cols[3] = cols[2] + shift[:, 0], cols[3] + shift[:, 1]
    drawn = [torch.stack(cols, dim=1), fill]
    if cfg.trivial:  # drawn last, for the same reason
        u = torch.rand(b, 3, generator=g, device=device)
        drawn.append(draw_ops(u[:, 0], u[:, 1], u[:, 2], cfg.trivial))
    return torch.cat(drawn, dim=1)


def apply_augment(x_uint8: torch.Tensor, sizes: torch.Tensor, p: torch.Tensor, out: int,
                  consts: torch.Tensor) -> torch.Tensor:
    """The deterministic part: crop + rotation + shear + flip + resize, colour jitter, the
    TrivialAugment op (when p has its columns), normalize, erasing.

    Pure tensor code with no random draws (p holds them), so torch.compile can fuse it.
    `consts` rows: mean, std, grey weights.
    """
    b = x_uint8.shape[0]
    angle = p[:, P_ANGLE]
    trivial = p.shape[1] > P_OP
    shear = shear_of(p[:, P_OP], p[:, P_MAG]) if trivial else None
    x = _resample(x_uint8, sizes, out, p[:, P_SX], p[:, P_SY], p[:, P_CX], p[:, P_CY], p[:, P_FLIP],
                  torch.cos(angle), torch.sin(angle), shear) / 255.0  # fmt: skip
    mean, std, gray_w = (consts[i].view(1, 3, 1, 1) for i in range(3))
    x = x * p[:, P_BRIGHT].view(b, 1, 1, 1)
    mean_gray = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean_gray) * p[:, P_CONTRAST].view(b, 1, 1, 1) + mean_gray
    gray = (x * gray_w).sum(1, keepdim=True)
    x = ((x - gray) * p[:, P_SAT].view(b, 1, 1, 1) + gray).clamp(0.0, 1.0)
    if trivial:
        x = apply_photometric(x, p[:, P_OP], p[:, P_MAG])
    x = (x - mean) / std
    eh = (p[:, P_EH] * out).clamp(1, out).view(b, 1, 1)
    ew = (p[:, P_EW] * out).clamp(1, out).view(b, 1, 1)
    y0 = p[:, P_EY].view(b, 1, 1) * (out - eh)
    x0 = p[:, P_EX].view(b, 1, 1) * (out - ew)
    ys = torch.arange(out, device=x.device).view(1, out, 1)
    xs = torch.arange(out, device=x.device).view(1, 1, out)
    mask = (p[:, P_EON].view(b, 1, 1) > 0.5) & (ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)
    return torch.where(mask.unsqueeze(1), p[:, P_FILL].view(b, 3, 1, 1), x)


@functools.lru_cache(maxsize=16)
def _consts(mean: tuple, std: tuple, device: torch.device) -> torch.Tensor:
    """mean, std and grey weights on the device, made once (a fresh host->device copy would sync)."""
    return torch.tensor([list(mean), list(std), [0.299, 0.587, 0.114]], dtype=torch.float32, device=device)


_compiled_apply = None


def augment_params(rows: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device,
                   draw: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
    """The (rows, 17) parameters of one batch's augmentation ((rows, 19) with `trivial`). `draw` =
    (first, total): parameters are drawn for `total` rows and rows first.. are kept (a torchrun
    rank's part of the global batch, which then gets what one process training the whole batch
    would draw for it)."""
    first, total = draw if draw is not None else (0, rows)
    p = sample_augment_params(total, cfg, g, device)[first : first + rows]
    if not cfg.erasing:
        p[:, P_EON] = 0.0
    return p


def augment_batch(x_uint8: torch.Tensor, sizes: torch.Tensor, out: int, cfg: AugmentConfig, mean, std,
                  g: torch.Generator | None = None, channels_last: bool = False, fused: bool = False,
                  draw: tuple[int, int] | None = None, params: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Random resized crop + rotation + flip + resize (one resample), colour jitter, normalize, erasing.

    `fused` runs the deterministic part through torch.compile (one compile per process; worth
    it on a GPU, where the eager version's separate passes over the batch cost ~14 % of a
    resnet18 step). Same random draws either way. The draws are `params` (from `augment_params`:
    one draw shared by several views of a batch, e.g. a student's and its teachers' at their
    own sizes), else drawn here from `g` (`draw` as in `augment_params`).
    """
    global _compiled_apply
    if params is None and g is None:
        raise ValueError("augment_batch needs the step's generator `g` or drawn `params`")
    p = params if params is not None else augment_params(x_uint8.shape[0], cfg, g, x_uint8.device, draw)  # type: ignore[arg-type]
    fn = apply_augment
    if fused:
        if _compiled_apply is None:
            _compiled_apply = compile_repeatably(apply_augment)
        fn = _compiled_apply
    x = fn(x_uint8, sizes, p, out, _consts(tuple(mean), tuple(std), x_uint8.device))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
