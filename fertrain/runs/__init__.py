"""Run layer: lock, reports and status for every command that writes a run directory."""

from fertrain.runs.context import Run, open_run
from fertrain.runs.listing import RunInfo, clean_runs, find_runs
from fertrain.runs.lock import LOCK_NAME, RunLockedError, StaleLockError, lock_state, read_lock, run_lock
from fertrain.runs.reports import AlignedData, environment_info, write_alignment_report, write_environment

__all__ = [
    "LOCK_NAME", "AlignedData", "Run", "RunInfo", "RunLockedError", "StaleLockError", "clean_runs",
    "environment_info", "find_runs", "lock_state", "open_run", "read_lock", "run_lock",
    "write_alignment_report", "write_environment",
]  # fmt: skip
