"""A `--fold` run's held-out training rows (RUN/heldout_rows.json), in one place for its writer (the
training engine) and its readers (the provenance calibration checks, the out-of-fold export)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fertrain.atomic import atomic_write_json
from fertrain.errors import InputError
from fertrain.runs.report_paths import HELDOUT_ROWS


@dataclass(frozen=True)
class HeldOutRows:
    fold: int
    folds: int
    split: str  # the training split the fold was taken from
    manifest_sha256: str
    row_ids: list[str]


def write_heldout(run_dir: Path, held: HeldOutRows) -> None:
    atomic_write_json(run_dir / HELDOUT_ROWS, {**asdict(held), "rows": len(held.row_ids)})


def read_heldout(run_dir: Path) -> HeldOutRows | None:
    """The run's held-out rows; None for a run that trained on all its training rows."""
    path = run_dir / HELDOUT_ROWS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return HeldOutRows(int(data["fold"]), int(data["folds"]), str(data["split"]), str(data["manifest_sha256"]),
                           [str(r) for r in data["row_ids"]])  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a held-out row list ({type(exc).__name__}: {exc})", kind="format") from None
