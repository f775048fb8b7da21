"""`fertrain predict`: every face in images, folders and videos, as rows of a CSV/JSON table
(file, frame, face box, label, calibrated probabilities, detector score), optionally drawn onto
annotated copies. Unreadable inputs are reported by name and skipped; the command then ends
with a non-zero status."""

from __future__ import annotations

import csv
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from rich.table import Table

from fertrain.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from fertrain.console import console, progress_bar
from fertrain.deploy.inputs import Item, expand, read_items
from fertrain.deploy.recognizer import Face, Recognizer
from fertrain.errors import ConfigError

BATCH = 64  # images per model call; a block of BATCH x the model's workers images is labelled at once
# a block also ends at this many pixels: up to three blocks are held at once (one read, two labelled),
# which for 12-MP photos would otherwise be 384 images, 14 GB
BLOCK_PIXELS = 64_000_000


@dataclass
class PredictReport:
    rows: list[dict] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, what went wrong)
    inputs: int = 0
    frames: int = 0
    written: list[str] = field(default_factory=list)


def face_row(item: Item, index: int, face: Face, topk: int) -> dict:
    x, y, w, h = face.box
    row = {"file": str(item.file), "frame": item.frame, "face": index, "x": x, "y": y, "w": w, "h": h,
           "score": round(face.score, 4), "label": face.label}  # fmt: skip
    row.update({f"prob_{name.lower()}": round(p, 6) for name, p in face.probabilities.items()})
    if topk:
        row["top"] = ", ".join(f"{n} {p:.3f}" for n, p in face.top(topk))
    return row


class Annotator:
    """Writes each input with its faces drawn (box, label, probability): images as JPEGs, a video
    as an AVI (MJPG) of the frames that were read."""

    def __init__(self, out: Path, inputs: list[Path]):
        self.out, self.videos = out, {}
        self.roots = [p for p in inputs if p.is_dir()]

    def target(self, file: Path, suffix: str) -> Path:
        for root in self.roots:
            if root in file.parents:
                return (self.out / root.name / file.relative_to(root)).with_suffix(suffix)
        return (self.out / file.name).with_suffix(suffix)

    def draw(self, item: Item, faces: list[Face]) -> None:
        img = cv2.cvtColor(item.rgb, cv2.COLOR_RGB2BGR)
        thick = max(1, round(max(img.shape[:2]) / 300))
        for f in faces:
            x, y, w, h = f.box
            cv2.rectangle(img, (x, y), (x + w, y + h), (0, 200, 0), thick)
            text = f"{f.label} {f.probabilities[f.label]:.2f}"
            cv2.putText(img, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 200, 0), thick)
        if item.frame is None:
            atomic_write_bytes(self.target(item.file, ".jpg"), cv2.imencode(".jpg", img)[1].tobytes())
            return
        writer = self.videos.get(item.file)
        if writer is None:
            path = self.target(item.file, ".avi")
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), item.fps or 25.0,
                                     (img.shape[1], img.shape[0]))  # fmt: skip
            self.videos[item.file] = writer
        writer.write(img)

    def close(self) -> list[str]:
        for writer in self.videos.values():
            writer.release()
        return [str(self.target(f, ".avi")) for f in self.videos]


def predict_paths(recognizer: Recognizer, inputs: list[str | Path], *, every: int = 1, topk: int = 0,
                  annotate: str | Path | None = None, show_progress: bool = True) -> PredictReport:  # fmt: skip
    if every < 1:
        raise ConfigError(f"--every {every}: must be >= 1")
    paths = [Path(p) for p in inputs]
    files = expand(paths)
    report = PredictReport(inputs=len(files))
    annotator = Annotator(Path(annotate), paths) if annotate else None
    pending: list[Item] = []
    pending_pixels = 0
    in_flight: deque[tuple[list[Item], Future]] = deque()  # blocks the model threads have, oldest first
    workers = recognizer.model.workers  # model calls run side by side
    block = BATCH * workers  # enough faces for every one of them
    # two model threads when the model runs batches side by side: the next block's batches start
    # while the last one's probabilities and rows are made (0.54-0.57 s for 1,000 faces, 0.56-0.60 with one)
    model_threads = min(2, workers)

    def collect_oldest() -> None:
        items, result = in_flight.popleft()
        for item, faces in zip(items, result.result(), strict=True):
            report.rows += [face_row(item, i, f, topk) for i, f in enumerate(faces)]
            if annotator is not None:
                annotator.draw(item, faces)

    # the next block is read (decoded) here while the model threads detect and label the ones before
    with ThreadPoolExecutor(model_threads, thread_name_prefix="predict") as labelling, \
            progress_bar("predict", total=len(files), unit="file", show=show_progress) as advance:  # fmt: skip

        def flush() -> None:
            nonlocal pending_pixels
            in_flight.append((pending[:], labelling.submit(recognizer.predict_many, [it.rgb for it in pending])))
            pending.clear()
            pending_pixels = 0
            while len(in_flight) > 1:
                collect_oldest()

        last = None
        for item in read_items(files, every):
            if item.file != last:
                if last is not None:
                    advance(1)
                last = item.file
            if item.error:
                report.errors.append((str(item.file), item.error))
                console.print(f"[bold red]error:[/] {item.file}: {item.error}", soft_wrap=True, highlight=False)
                continue
            report.frames += 1
            pending.append(item)
            pending_pixels += item.rgb.shape[0] * item.rgb.shape[1]
            if len(pending) >= block or pending_pixels >= BLOCK_PIXELS:
                flush()
        if pending:
            flush()
        while in_flight:
            collect_oldest()
        if last is not None:
            advance(1)
    if annotator is not None:
        annotator.close()
    return report


def write_rows(report: PredictReport, out: str | Path) -> str:
    """The face rows as CSV or JSON (by extension), written atomically."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        atomic_write_json(out, {"faces": report.rows, "errors": [{"file": f, "error": e} for f, e in report.errors]})
    elif out.suffix.lower() == ".csv":
        columns = list(dict.fromkeys(k for row in report.rows for k in row))  # every row's keys, in order
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(report.rows)
    else:
        raise ConfigError(f"--out {out}: expected a .csv or .json file")
    return str(out)


def summary_json(report: PredictReport) -> str:
    return json.dumps({"inputs": report.inputs, "frames": report.frames, "faces": len(report.rows),
                       "errors": len(report.errors)})  # fmt: skip


def result_table(rows: list[dict], class_names: list[str], limit: int = 20, title: str = "faces") -> Table:
    """The first `limit` face rows as a table: file, frame, box, label, its probability, detector score."""
    t = Table(title=f"{title} (first {min(limit, len(rows))} of {len(rows)})", title_justify="left")
    for col, kw in (("file", {"overflow": "fold", "ratio": 3}), ("frame", {}), ("box", {}), ("label", {}),
                    ("p", {"justify": "right"}), ("score", {"justify": "right"})):  # fmt: skip
        t.add_column(col, **kw)
    for r in rows[:limit]:
        t.add_row(Path(r["file"]).name, "" if r["frame"] is None else str(r["frame"]),
                  f"{r['x']},{r['y']} {r['w']}x{r['h']}", r["label"], f"{r['prob_' + r['label'].lower()]:.3f}",
                  f"{r['score']:.2f}")  # fmt: skip
    return t
