"""`run_status.json`: how a run is doing (running / finished / failed / interrupted), plus notes
a run records on the way (e.g. a forced resume over a changed config)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from fertrain.atomic import atomic_write_json
from fertrain.runs.signals import RunInterrupted
from fertrain.timestamps import local_timestamp

STATUS_NAME = "run_status.json"


def write_status(output_dir: str | Path, status: str, *, command: str, started: str, error: str | None = None,
                 notes: dict | None = None) -> None:  # fmt: skip
    atomic_write_json(Path(output_dir) / STATUS_NAME, {
        "status": status, "command": command, "started": started,
        "ended": local_timestamp() if status != "running" else None, "error": error,
        **(notes or {}),
    })  # fmt: skip


def read_status(output_dir: str | Path) -> dict:
    """The run's `run_status.json`, or {} where there is none (yet) or it cannot be read."""
    try:
        return json.loads((Path(output_dir) / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ended_status(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, RunInterrupted | KeyboardInterrupt) else "failed"


@contextlib.contextmanager
def recorded_status(output_dir: str | Path, *, command: str, started: str, notes: dict | None = None) -> Iterator[None]:
    """`running` for the block, then `finished`, or `interrupted` / `failed` with the error that ended it.
    `notes` is read when the block ends, so what the block added to it is recorded."""
    write_status(output_dir, "running", command=command, started=started)
    try:
        yield
    except BaseException as exc:
        write_status(output_dir, ended_status(exc), command=command, started=started,
                     error=f"{type(exc).__name__}: {exc}", notes=notes)  # fmt: skip
        raise
    write_status(output_dir, "finished", command=command, started=started, notes=notes)
