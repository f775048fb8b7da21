"""Which files are images, and how large an image fertrain decodes: what the manifest builder,
the data loaders and `fertrain predict` share. Kept apart from the probing pool (`imageprobe`) so
that serving a model imports neither it nor the dataset adapters."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# Images are faces or photos with faces: anything larger is refused before it is decoded (a
# 10000x10000 image would take 300 MB per decode in every loader worker).
MAX_IMAGE_PIXELS = 40_000_000


def oversize(data: bytes | memoryview) -> str | None:
    """Why an encoded image is too large to decode (read from its header only), or None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None  # not something Pillow reads: OpenCV decides
    if width * height > MAX_IMAGE_PIXELS:
        return (f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the {MAX_IMAGE_PIXELS / 1e6:.0f} MP "
                "fertrain decodes; crop the faces or downscale it")  # fmt: skip
    return None
