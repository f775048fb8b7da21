"""What `fertrain predict` reads: image files, folders of them (recursive) and videos (every Nth
frame). Each item is a (file, frame) with its RGB pixels, or the error that kept it from being
read: one bad file never stops the others."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrain.deploy.recognizer import read_image
from fertrain.errors import FertrainError
from fertrain.manifests.image_files import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass
class Item:
    file: Path
    frame: int | None  # video frame index, None for an image
    rgb: np.ndarray | None = None
    error: str | None = None
    fps: float | None = None  # videos: frames per second of the source


def expand(inputs: list[Path]) -> list[Path]:
    """Files as given, folders as their images and videos (recursive, sorted)."""
    out = []
    for p in inputs:
        if p.is_dir():
            known = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in known)
        else:
            out.append(p)
    return out


def read_items(files: list[Path], every: int = 1) -> Iterator[Item]:
    for f in files:
        suffix = f.suffix.lower()
        if not f.is_file():
            yield Item(f, None, error="file not found")
        elif suffix in VIDEO_EXTENSIONS:
            yield from video_frames(f, every)
        elif suffix in IMAGE_EXTENSIONS:
            try:
                yield Item(f, None, read_image(f))
            except FertrainError as exc:
                yield Item(f, None, error=str(exc).removeprefix(f"{f}: "))
        else:
            known = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            yield Item(f, None, error=f"unsupported format {suffix or '(no extension)'}; expected one of {known}")


def video_frames(path: Path, every: int) -> Iterator[Item]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield Item(path, None, error="not a readable video")
        return
    fps = cap.get(cv2.CAP_PROP_FPS) or None
    index = 0
    try:
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % every == 0:
                ok, frame = cap.retrieve()
                if ok:
                    yield Item(path, index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), fps=fps)
            index += 1
    finally:
        cap.release()
    if index == 0:
        yield Item(path, None, error="no frames could be decoded")
