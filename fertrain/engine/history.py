"""Per-epoch records of a run, as files: history.json (full records, per-class metrics and
confusion matrices included), metrics.json and metrics.csv (the scalar columns, one row per
epoch), and at the end of a run training_curves.png."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from fertrain.atomic import atomic_write_json, atomic_write_text
from fertrain.plots import plot_training_curves
from fertrain.runs.report_paths import HISTORY

CURVES = "training_curves.png"


def scalar_records(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in history]


def write_history(out: Path, history: list[dict]) -> None:
    atomic_write_json(out / HISTORY, history)
    scalars = scalar_records(history)
    atomic_write_json(out / "metrics.json", scalars)
    columns = list(dict.fromkeys(k for r in scalars for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in scalars:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def write_curves(out: Path, history: list[dict], title: str) -> Path | None:
    """Loss and accuracy per epoch, train vs validation (None when nothing was evaluated)."""
    if not any("val_accuracy" in r for r in history):
        return None
    return plot_training_curves(history, out / CURVES, title=title)
