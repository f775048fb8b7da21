"""Procedural face-expression images for the demo pipeline and tests.

Each expression is a point in a small geometry space (brow raise and tilt, eye opening,
mouth curve, opening and width, nose wrinkle). A sample blends an identity's neutral face
toward its expression's prototype with a random intensity and adds jitter, so neighbouring
expressions (fear/surprise, anger/disgust, sad/neutral) overlap the way real ones do.
Identity (face shape, skin, eye spacing), pose, scale, lighting, blur and noise vary per
image. Everything is drawn with OpenCV from one seeded generator: same seed, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from fertrain.labels import CLASS_NAMES


@dataclass(frozen=True)
class Expression:
    brow_raise: float = 0.0  # + up
    brow_tilt: float = 0.0  # + inner ends down (anger), - inner ends up (sadness, fear)
    eye_open: float = 1.0
    mouth_curve: float = 0.0  # + corners up (smile), - corners down
    mouth_open: float = 0.0
    mouth_width: float = 1.0
    nose_wrinkle: float = 0.0


PROTOTYPES: dict[str, Expression] = {
    "Angry": Expression(brow_raise=-0.5, brow_tilt=0.9, eye_open=0.85, mouth_curve=-0.25, mouth_width=0.8),
    "Disgust": Expression(brow_raise=-0.3, brow_tilt=0.35, eye_open=0.7, mouth_curve=-0.55, mouth_open=0.15,
                          nose_wrinkle=1.0),
    "Fear": Expression(brow_raise=0.6, brow_tilt=-0.55, eye_open=1.45, mouth_curve=-0.2, mouth_open=0.45,
                       mouth_width=1.2),
    "Happy": Expression(eye_open=0.8, mouth_curve=0.9, mouth_open=0.3, mouth_width=1.25),
    "Sad": Expression(brow_raise=0.1, brow_tilt=-0.8, eye_open=0.8, mouth_curve=-0.7, mouth_width=0.9),
    "Surprise": Expression(brow_raise=0.95, eye_open=1.55, mouth_open=0.95, mouth_width=0.7),
    "Neutral": Expression(),
}  # fmt: skip
assert tuple(PROTOTYPES) == CLASS_NAMES


@dataclass(frozen=True)
class Identity:
    face_rx: float
    face_ry: float
    skin: tuple[int, int, int]
    eye_spacing: float
    eye_size: float
    brow_thickness: float
    mouth_y: float
    background: tuple[int, int, int]


def random_identity(rng: np.random.Generator) -> Identity:
    tone = rng.uniform(0.35, 1.0)
    skin = (int(90 + 120 * tone), int(110 + 110 * tone), int(140 + 100 * tone))  # BGR
    return Identity(
        face_rx=rng.uniform(0.27, 0.34), face_ry=rng.uniform(0.36, 0.43), skin=skin,
        eye_spacing=rng.uniform(0.10, 0.14), eye_size=rng.uniform(0.045, 0.06),
        brow_thickness=rng.uniform(0.012, 0.022), mouth_y=rng.uniform(0.17, 0.22),
        background=tuple(int(v) for v in rng.integers(20, 235, size=3)),
    )  # fmt: skip


def sample_expression(label: int, rng: np.random.Generator, jitter: float = 0.18) -> Expression:
    """Blend neutral toward the prototype with a random intensity, then jitter every axis."""
    proto, neutral = PROTOTYPES[CLASS_NAMES[label]], PROTOTYPES["Neutral"]
    k = rng.uniform(0.45, 1.0)
    values = {}
    for name in vars(neutral):
        base = getattr(neutral, name) + k * (getattr(proto, name) - getattr(neutral, name))
        values[name] = base + rng.normal(0.0, jitter)
    values["eye_open"] = max(0.25, values["eye_open"])
    values["mouth_open"] = max(0.0, values["mouth_open"])
    values["mouth_width"] = max(0.5, values["mouth_width"])
    values["nose_wrinkle"] = max(0.0, values["nose_wrinkle"])
    return replace(neutral, **values)


def _pt(x: float, y: float, c: int, shift: int = 4) -> tuple[int, int]:
    return round(x * c * (1 << shift)), round(y * c * (1 << shift))


def draw_face(ident: Identity, expr: Expression, canvas: int) -> np.ndarray:
    """Draw an upright face centred on a `canvas`-pixel square (BGR uint8)."""
    c, s = canvas, 4  # sub-pixel precision for anti-aliased drawing
    img = np.full((c, c, 3), ident.background, np.uint8)
    aa = cv2.LINE_AA
    dark = (40, 40, 50)
    cx, cy = 0.5, 0.52
    cv2.ellipse(img, _pt(cx, cy, c, s), _pt(ident.face_rx, ident.face_ry, c, s), 0, 0, 360, ident.skin, -1, aa, s)
    eye_y = cy - 0.1
    for side in (-1, 1):
        ex = cx + side * ident.eye_spacing
        eh = ident.eye_size * 0.55 * expr.eye_open
        cv2.ellipse(img, _pt(ex, eye_y, c, s), _pt(ident.eye_size, eh, c, s), 0, 0, 360, (235, 235, 235), -1, aa, s)
        cv2.circle(img, _pt(ex, eye_y, c, s), int(min(ident.eye_size * 0.45, eh) * c * (1 << s)), dark, -1, aa, s)
        brow_y = eye_y - 0.065 - 0.04 * expr.brow_raise
        inner = _pt(cx + side * 0.04, brow_y + 0.03 * expr.brow_tilt, c, s)
        outer = _pt(cx + side * (ident.eye_spacing + 0.07), brow_y - 0.015 * expr.brow_tilt, c, s)
        cv2.line(img, inner, outer, dark, max(1, int(ident.brow_thickness * c)), aa, s)
    cv2.line(img, _pt(cx, eye_y + 0.02, c, s), _pt(cx, cy + 0.07, c, s), (90, 90, 110), max(1, c // 100), aa, s)
    if expr.nose_wrinkle > 0.3:
        for side in (-1, 1):
            for k in range(2):
                y0 = eye_y + 0.04 + 0.025 * k
                cv2.line(img, _pt(cx + side * 0.025, y0, c, s), _pt(cx + side * 0.055, y0 - 0.015, c, s),
                         (70, 70, 90), max(1, c // 120), aa, s)  # fmt: skip
    my = cy + ident.mouth_y
    half_w = 0.09 * expr.mouth_width
    xs = np.linspace(-1.0, 1.0, 21)
    curve = -0.05 * expr.mouth_curve * xs**2  # corners up when curve > 0
    upper = np.stack([cx + half_w * xs, my + curve - 0.005], axis=1)
    lower = np.stack([cx + half_w * xs, my + curve + 0.005 + 0.07 * expr.mouth_open * (1 - xs**2)], axis=1)
    poly = np.concatenate([upper, lower[::-1]]) * c * (1 << s)
    cv2.fillPoly(img, [poly.round().astype(np.int32)], (60, 50, 120), aa, s)
    return img


@dataclass
class Capture:
    """Per-image nuisance: pose, scale, lighting, blur, noise."""

    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    light: tuple[float, float, float] = (1.0, 0.0, 0.0)
    blur: float = 0.0
    noise: float = 0.0
    extras: dict = field(default_factory=dict)


def random_capture(rng: np.random.Generator) -> Capture:
    return Capture(
        angle=rng.uniform(-15, 15), scale=rng.uniform(0.85, 1.12),
        shift=(rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06)),
        light=(rng.uniform(0.6, 1.25), rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35)),
        blur=rng.uniform(0.0, 1.2), noise=rng.uniform(2.0, 12.0),
    )  # fmt: skip


def apply_capture(img: np.ndarray, cap: Capture, rng: np.random.Generator) -> np.ndarray:
    c = img.shape[0]
    m = cv2.getRotationMatrix2D((c / 2, c / 2), cap.angle, cap.scale)
    m[:, 2] += np.array(cap.shift) * c
    img = cv2.warpAffine(img, m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float32) / c - 0.5
    gain = cap.light[0] + cap.light[1] * xx + cap.light[2] * yy
    out = img.astype(np.float32) * gain[..., None]
    if cap.blur > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), cap.blur * c / 100)
    out += rng.normal(0.0, cap.noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_sample(label: int, ident: Identity, rng: np.random.Generator, size: int, color: bool) -> np.ndarray:
    """One face image of class `label`: uint8, size x size, BGR (color) or grayscale."""
    canvas = max(2 * size, 96)
    img = apply_capture(draw_face(ident, sample_expression(label, rng), canvas), random_capture(rng), rng)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img if color else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
