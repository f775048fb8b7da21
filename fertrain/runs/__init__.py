"""Run layer: lock, reports and status for every command that writes a run directory.

Names are imported from their submodules on first use (see `fertrain.lazy`)."""

from fertrain.lazy import lazy_exports

_EXPORTS = {
    "Run": "context", "open_run": "context", "read_run": "context", "RunInfo": "listing", "clean_runs": "listing",
    "find_runs": "listing",
    "LOCK_NAME": "lock", "RunLockedError": "lock", "StaleLockError": "lock", "lock_state": "lock",
    "read_lock": "lock", "run_lock": "lock", "AlignedData": "reports", "environment_info": "reports",
    "write_alignment_report": "reports", "write_environment": "reports",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
