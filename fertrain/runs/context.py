"""`open_run`: what every command that writes a run directory gets for free.

    with open_run(out_dir, seed=1337, manifest="m.parquet", source_filter=policy) as run:
        train_rows = run.data.rows[run.data.rows.split == "train"]
        ...

Holds the run lock, writes environment.json and (given a manifest) alignmentreport.json,
and records in run_status.json whether the block finished or failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fertrain.manifests.filters import SourceFilter
from fertrain.runs.lock import default_command, run_lock
from fertrain.runs.reports import AlignedData, write_alignment_report, write_environment
from fertrain.runs.status import write_status


@dataclass
class Run:
    output_dir: Path
    lock: dict
    data: AlignedData | None
    command: str = ""
    notes: dict = field(default_factory=dict)

    def note(self, key: str, value) -> None:
        """Record `key` in run_status.json now and in the final status."""
        self.notes[key] = value
        write_status(self.output_dir, "running", command=self.command, started=self.lock["started"], notes=self.notes)


@contextlib.contextmanager
def open_run(
    output_dir: str | Path,
    *,
    seed: int | None = None,
    manifest: str | Path | None = None,
    source_filter: SourceFilter | None = None,
    recover_stale: bool = False,
    allow_manifest_change: bool = False,
    command: str | None = None,
) -> Iterator[Run]:
    output_dir = Path(output_dir)
    command = command or default_command()
    with run_lock(output_dir, recover_stale=recover_stale, command=command) as lock:
        write_status(output_dir, "running", command=command, started=lock["started"])
        run = Run(output_dir, lock, None, command)
        try:
            write_environment(output_dir, seed=seed, command=command)
            if manifest is not None:
                run.data = write_alignment_report(output_dir, manifest, source_filter,
                                                  allow_manifest_change=allow_manifest_change)  # fmt: skip
            yield run
        except BaseException as exc:
            write_status(output_dir, "failed", command=command, started=lock["started"],
                         error=f"{type(exc).__name__}: {exc}", notes=run.notes)  # fmt: skip
            raise
        write_status(output_dir, "finished", command=command, started=lock["started"], notes=run.notes)
