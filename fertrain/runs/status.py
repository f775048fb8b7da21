"""`run_status.json`: how a run ended (finished / failed), written when the run exits."""

from __future__ import annotations

import time
from pathlib import Path

from fertrain.atomic import atomic_write_json

STATUS_NAME = "run_status.json"


def write_status(output_dir: str | Path, status: str, *, command: str, started: str, error: str | None = None) -> None:
    atomic_write_json(Path(output_dir) / STATUS_NAME, {
        "status": status, "command": command, "started": started,
        "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z") if status != "running" else None, "error": error,
    })  # fmt: skip
