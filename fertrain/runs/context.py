"""`open_run`: what every command that writes a run directory gets for free.

    with open_run(out_dir, seed=1337, manifest="m.parquet", source_filter=policy) as run:
        train_rows = run.data.rows[run.data.rows.split == "train"]
        ...

Holds the run lock, writes environment.json and (given a manifest) alignmentreport.json,
and records in run_status.json whether the block finished, failed or was interrupted (a
signal: a plain re-run resumes). A start that fails before the work began (a missing
manifest, an unknown backbone, no GPU: before `run.mark_started()`) removes the directory it
created, so no half-made run is left behind.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fertrain.manifests.filters import SourceFilter
from fertrain.runs.lock import default_command, run_lock
from fertrain.runs.reports import AlignedData, load_aligned_data, write_alignment_report, write_environment
from fertrain.runs.status import recorded_status, write_status


@dataclass
class Run:
    output_dir: Path
    lock: dict
    data: AlignedData | None
    command: str = ""
    notes: dict = field(default_factory=dict)
    started: bool = False
    read_only: bool = False  # a torchrun rank other than 0: it reads the run, rank 0 writes it

    def mark_started(self) -> None:
        """The work began: from now on a failure is recorded in the run, not cleaned away."""
        self.started = True

    def note(self, key: str, value) -> None:
        """Record `key` in run_status.json now and in the final status."""
        self.notes[key] = value
        if self.read_only:
            return
        write_status(self.output_dir, "running", command=self.command, started=self.lock["started"], notes=self.notes)


def produced_results(output_dir: Path) -> bool:
    """Whether a run directory holds anything worth keeping (a checkpoint or weights, at any depth:
    a pipeline's directory holds its stages' runs)."""
    return any(output_dir.rglob("*.pt"))


def read_run(output_dir: str | Path, manifest: str | Path, source_filter: SourceFilter | None = None, *,
             command: str | None = None) -> Run:
    """The run as a process that does not own it sees it (a torchrun rank other than 0): the
    manifest checked and filtered as `open_run` does, no lock taken, nothing written."""
    data = load_aligned_data(manifest, source_filter)
    return Run(Path(output_dir), {"started": None}, data, command or default_command(), read_only=True)


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
    inputs: dict[str, dict] | None = None,
) -> Iterator[Run]:
    output_dir = Path(output_dir)
    command = command or default_command()
    created = not output_dir.exists()
    run = Run(output_dir, {}, None, command)
    try:
        with run_lock(output_dir, recover_stale=recover_stale, command=command) as lock, \
                recorded_status(output_dir, command=command, started=lock["started"], notes=run.notes):
            run.lock = lock
            write_environment(output_dir, seed=seed, command=command)
            if manifest is not None:
                run.data = write_alignment_report(output_dir, manifest, source_filter, inputs=inputs,
                                                  allow_manifest_change=allow_manifest_change)  # fmt: skip
            yield run
    except BaseException:
        if created and not run.started and output_dir.is_dir() and not produced_results(output_dir):
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
