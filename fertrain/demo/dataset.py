"""`fertrain demo-data OUT`: two synthetic sources in the FER2013 image-folder layout.

- `lowres/`: 48x48 grayscale, like FER2013 (the low-resolution source Stage B excludes).
- `hires/`: 112x112 colour (the "higher-quality" source).

Each has `train/`, `validation/`, `test/` with `<class>/Training_<id>.jpg` etc. Identities
are disjoint across splits, and Disgust is rarer, as in FER2013.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrain.atomic import atomic_write_bytes
from fertrain.demo.render import random_identity, render_sample
from fertrain.labels import CLASS_NAMES

SPLITS = (("train", "Training"), ("validation", "PublicTest"), ("test", "PrivateTest"))
CLASS_SHARE = {"Disgust": 0.45}  # rarer, like FER2013


@dataclass(frozen=True)
class DemoSource:
    name: str
    size: int
    color: bool
    per_class: tuple[int, int, int]  # train, validation, test images of a common class


DEMO_SOURCES = (
    DemoSource("lowres", 48, False, (110, 25, 25)),
    DemoSource("hires", 112, True, (60, 15, 15)),
)


def write_demo_dataset(out: str | Path, *, seed: int = 1337, scale: float = 1.0) -> dict[str, dict[str, int]]:
    """Render the demo sources under `out`; returns {source/split: images}. Deterministic in `seed`."""
    out = Path(out)
    counts: dict[str, dict[str, int]] = {}
    for s_idx, src in enumerate(DEMO_SOURCES):
        rng = np.random.default_rng([seed, s_idx])
        next_id = 1
        for (folder, usage), n_common in zip(SPLITS, src.per_class, strict=True):
            n_written = 0
            identities = [random_identity(rng) for _ in range(max(4, int(n_common * scale) // 3))]
            for label, name in enumerate(CLASS_NAMES):
                n = max(2, round(n_common * scale * CLASS_SHARE.get(name, 1.0)))
                class_dir = out / src.name / folder / name.lower()
                class_dir.mkdir(parents=True, exist_ok=True)
                for _ in range(n):
                    ident = identities[int(rng.integers(len(identities)))]
                    img = render_sample(label, ident, rng, src.size, src.color)
                    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    assert ok
                    atomic_write_bytes(class_dir / f"{usage}_{next_id:06d}.jpg", jpg.tobytes(), durable=False)
                    next_id += 1
                    n_written += 1
            counts.setdefault(src.name, {})[folder] = n_written
    return counts
