"""What may change when a run resumes: an allowlist, everything else is refused.

Resuming with another data, model, loss, augmentation or schedule setting would silently mix
two experiments in one run. Only options that cannot change what is computed may differ:
where and how fast it runs, where it writes and logs, and how often it evaluates or saves.
`--force` resumes anyway and the override is recorded (run_status.json and the history).
"""

from __future__ import annotations

from pathlib import Path

from fertrain.engine.config import flag
from fertrain.errors import FertrainError
from fertrain.runs.runtime_options import RUNTIME_OPTIONS

RESUMABLE_KEYS = RUNTIME_OPTIONS | {
    "init_from",  # only applies to a new run
    "manifest",  # the path; its content is checked by sha256 in the alignment report
}


def config_changes(saved: dict, current: dict, allowed: frozenset[str] = RESUMABLE_KEYS) -> dict[str, list]:
    """{key: [old, new]} for every key outside `allowed` whose value differs."""
    keys = sorted((set(saved) | set(current)) - allowed)
    return {k: [saved.get(k), current.get(k)] for k in keys if saved.get(k) != current.get(k)}


def check_resume(saved: dict, current: dict, path: Path, force: bool,
                 allowed: frozenset[str] = RESUMABLE_KEYS) -> dict[str, list]:  # fmt: skip
    """Refuse a resume whose config changed outside `allowed`, naming each change (old -> new);
    with `force`, return the changes so the caller can record the override."""
    changes = config_changes(saved, current, allowed)
    if changes and not force:
        listed = "; ".join(f"{flag(k)}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
        raise FertrainError(f"refusing to resume {path}: the run's config changed ({listed}). Resuming would mix two "
                            "experiments in one run: use a new --output-dir, or --force to resume anyway (the "
                            "override is recorded in run_status.json and the history)")  # fmt: skip
    return changes
