"""Read each image once: sha256 of its bytes, size, and a 64-bit dHash of the face.

Runs over a process pool in chunks (see `parallel_map`); results are small records.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrain.console import progress_bar
from fertrain.manifests.image_files import oversize

# Below this many images, run in-process: starting spawn workers costs more than it saves.
# Measured: FER2013's 32k 48x48 faces took 4.2 s in-process vs 5.3 s with 15 workers on a
# 16-core host, and lost on 2 cores too (docs/benchmarks.md).
SERIAL_BELOW = 50_000
LARGE_SIDE = 4096  # images with a side this long are reported


@dataclass(frozen=True, slots=True)
class ImageFacts:
    sha256: str
    width: int
    height: int
    dhash: str  # 16 hex digits; "" when the box does not fit the image
    box_fits: bool
    box: tuple[int, int, int, int] | None = None  # the face box, clipped to the image if allowed
    clipped: bool = False


def dhash64(gray: np.ndarray) -> int:
    """Difference hash: 9x8 area-resize, one bit per horizontal neighbour comparison."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clip_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Intersect an x, y, w, h box with the image; None when nothing of it is inside."""
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(width, box[0] + box[2]), min(height, box[1] + box[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def probe_image(path: Path, box: tuple[int, int, int, int] | None, clip: bool = False) -> ImageFacts | str:
    """Facts about one image, or a message saying why it cannot be used.

    A box that reaches outside the image is refused (`box_fits=False`) unless `clip`, where
    the part inside is kept (the ExpW convention: crop by array slicing).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "image file not found"
    except OSError as exc:
        return f"cannot read image: {exc.strerror or exc}"
    too_big = oversize(data)
    if too_big:
        return too_big
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if gray is None:
        return "unreadable image (not a decodable image file)"
    height, width = gray.shape[:2]
    sha = hashlib.sha256(data).hexdigest()
    clipped = False
    if box is not None:
        inside = clip_box(box, width, height)
        clipped = inside != box
        if inside is None or (clipped and not clip) or box[2] <= 0 or box[3] <= 0:
            return ImageFacts(sha, width, height, "", box_fits=False, box=box)
        box = inside
        x, y, w, h = box
        gray = gray[y : y + h, x : x + w]
    return ImageFacts(sha, width, height, f"{dhash64(gray):016x}", box_fits=True, box=box, clipped=clipped)


def default_workers() -> int:
    """One process per core but one: the parent unpickles results and draws the progress bar.

    On 2 cores that means in-process, which measured fastest there (docs/benchmarks.md).
    """
    return max(1, (os.cpu_count() or 1) - 1)


def _run_chunk(fn: Callable, chunk: Sequence) -> list:
    return [fn(*item) for item in chunk]


def parallel_map(
    fn: Callable, items: Sequence, *, workers: int | None = None, description: str = "", show: bool = True
) -> list:
    """`[fn(*item) for item in items]`, in order, over worker processes, with a progress bar.

    Processes, not threads: for small images (FER2013's 48x48 JPEGs) the per-image work is
    mostly Python and holds the GIL, so threads measured slower than one thread. `fn` must
    be a module-level function. Small jobs run in-process, where start-up would dominate.
    """
    workers = workers or default_workers()
    chunk = 512
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    results: list = []
    with progress_bar(description, total=len(items), unit="img", show=show) as advance:
        if workers <= 1 or len(items) < SERIAL_BELOW:
            for part in chunks:
                results.extend(_run_chunk(fn, part))
                advance(len(part))
        else:
            ctx = multiprocessing.get_context("spawn")  # safe with threads (progress bar) in the parent
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for part in pool.map(_run_chunk, [fn] * len(chunks), chunks):
                    results.extend(part)
                    advance(len(part))
    return results
