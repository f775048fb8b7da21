"""FER2013 in its two native forms: the original CSV and the image-folder variant.

CSV: `emotion,pixels,Usage` with 2,304 space-separated grey values per row. Pixels are
materialized once into PNGs under the manifest's cache folder (deterministic encoding, so a
rebuild rewrites nothing and sha256s are stable). FERPlus reuses the same cache.

Folder: `train/<class>/Training_<id>.jpg`, `validation/<class>/PublicTest_<id>.jpg`, optional
`test/<class>/PrivateTest_<id>.jpg`; the filename prefix gives the Usage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrain.errors import InputError
from fertrain.manifests.adapters.base import AdapterContext, iter_images, read_csv_rows
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.schema import Candidate

FER_SIDE = 48
FER_PIXELS = FER_SIDE * FER_SIDE
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
# FER2013's own label order is the canonical order: 0 Angry ... 6 Neutral.
CSV_LABELS = {i: i for i in range(7)}
CSV_NATIVE_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
FOLDER_LABELS = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
DEFAULT_SPLIT_DIRS = {"train": "train", "val": "validation", "test": "test"}
CSV_HEADER = ["emotion", "pixels", "Usage"]


@dataclass(frozen=True)
class PixelRow:
    """One FER2013 CSV row whose pixels were materialized to `root/path`."""

    index: int  # 0-based data row position (the FERPlus join key)
    line: int
    emotion: str
    usage: str
    root: Path
    path: str


def _write_if_changed(path: Path, data: bytes) -> None:
    """Cache write: skip when identical bytes are already there, else temp + rename."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def materialize_fer2013_csv(ctx: AdapterContext, csv_path: Path) -> list[PixelRow]:
    """Parse and validate the CSV, writing each face once as a PNG in the cache.

    Rows with a bad pixel count, non-numeric or out-of-range values, or an unknown Usage are
    errors naming the line (or skipped and counted with --skip-bad).
    """
    ctx.require_file(csv_path, "FER2013 CSV with header emotion,pixels,Usage")
    root = ctx.cache_dir / "fer2013_pixels" / sha256_file(csv_path)[:16]
    made: set[str] = set()
    rows: list[PixelRow] = []
    for index, (line, rec) in enumerate(read_csv_rows(ctx, csv_path, CSV_HEADER)):
        usage = rec["Usage"].strip()
        if usage not in USAGE_TO_SPLIT:
            ctx.bad(csv_path, f"Usage {usage!r} is not one of {', '.join(USAGE_TO_SPLIT)}", line, "value")
            continue
        values = np.fromstring(rec["pixels"], dtype=np.int64, sep=" ")
        n_tokens = len(rec["pixels"].split())
        if n_tokens != FER_PIXELS or values.size != FER_PIXELS:
            ctx.bad(
                csv_path,
                f"pixels has {n_tokens} values, expected {FER_PIXELS} (48x48) numbers",
                line,
                "pixels",
            )
            continue
        if values.min() < 0 or values.max() > 255:
            ctx.bad(csv_path, "pixel values must be integers in 0..255", line, "pixels")
            continue
        folder = root / usage
        if usage not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(usage)
        rel = f"{usage}/{index:05d}.png"
        ok, png = cv2.imencode(".png", values.astype(np.uint8).reshape(FER_SIDE, FER_SIDE))
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {csv_path}:{line}")
        _write_if_changed(root / rel, png.tobytes())
        rows.append(PixelRow(index, line, rec["emotion"].strip(), usage, root, rel))
    ctx.notes["pixel_cache"] = str(root)
    return rows


def fer2013_csv_candidates(ctx: AdapterContext, csv_path: Path) -> list[Candidate]:
    out: list[Candidate] = []
    for row in materialize_fer2013_csv(ctx, csv_path):
        try:
            code = int(row.emotion)
        except ValueError:
            code = -1
        if code not in CSV_LABELS:
            ctx.bad(csv_path, f"emotion {row.emotion!r} out of range; expected 0..6", row.line, "label")
            continue
        out.append(
            Candidate(
                root=row.root,
                path=row.path,
                label=CSV_LABELS[code],
                native_label=CSV_NATIVE_NAMES[code],
                origin=(str(csv_path), row.line),
                split=USAGE_TO_SPLIT[row.usage],
            )
        )
    return out


def fer2013_folder_candidates(ctx: AdapterContext) -> list[Candidate]:
    split_dirs: dict[str, str] = ctx.options["split_dirs"] or DEFAULT_SPLIT_DIRS
    if not any((ctx.root / d).is_dir() for d in split_dirs.values()):  # any subset will do (an eval-only copy)
        expected = ", ".join(f"{d}/<class>/" for d in split_dirs.values())
        raise InputError(ctx.root, f"missing folder: expected at least one of {expected} image folders",
                         kind="missing")  # fmt: skip
    prefixes = {usage: split for usage, split in USAGE_TO_SPLIT.items()}
    out: list[Candidate] = []
    for folder_split, dirname in split_dirs.items():
        split_dir = ctx.root / dirname
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = FOLDER_LABELS.get(class_dir.name.lower())
            images = iter_images(class_dir)
            if not images:
                ctx.notes.setdefault("empty_folders", []).append(str(class_dir))
            if label is None:
                known = ", ".join(FOLDER_LABELS)
                if not ctx.skip_bad:
                    raise InputError(class_dir, f"unknown class folder; expected one of {known}", kind="label")
                ctx.drops["bad_label"] += len(images)
                continue
            for img in images:
                prefix = img.name.split("_", 1)[0]
                out.append(
                    Candidate(
                        root=ctx.root,
                        path=img.relative_to(ctx.root).as_posix(),
                        label=label,
                        native_label=class_dir.name,
                        origin=(str(img), None),
                        split=prefixes.get(prefix, folder_split),
                    )
                )
    return out


def fer2013(ctx: AdapterContext) -> list[Candidate]:
    layout = ctx.options["layout"]
    csv_path = ctx.root if ctx.root.suffix.lower() == ".csv" else ctx.root / ctx.options["csv"]
    if layout == "auto":
        if not ctx.root.exists():
            msg = "missing folder: expected FER2013 (train/ folders or fer2013.csv)"
            raise InputError(ctx.root, msg, kind="missing")
        layout = "csv" if csv_path.is_file() else "folder"
    if layout == "csv":
        return fer2013_csv_candidates(ctx, csv_path)
    if layout == "folder":
        ctx.require_dir(ctx.root, "FER2013 image-folder root with train/, validation/ and/or test/")
        return fer2013_folder_candidates(ctx)
    raise InputError(ctx.root, f"layout {layout!r} unknown; expected auto, csv or folder", kind="config")
