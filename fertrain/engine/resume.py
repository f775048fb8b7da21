"""What may change when a run resumes: an allowlist, everything else is refused.

Resuming with another data, model, loss, augmentation or schedule setting would silently mix
two experiments in one run. Only options that cannot change what is computed may differ:
where and how fast it runs, where it writes and logs, and how often it evaluates or saves.
The files an option names count by their content as well as their path: a soft-label file
exported again at the same path, or an online teacher retrained or recalibrated in place, is a
change (`input_changes`), as the manifest is checked by its sha256.
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


def input_changes(saved: dict[str, str], current: dict[str, str]) -> dict[str, list]:
    """{"<option> content": [old sha256, new sha256]} for each input file recorded at both times whose
    content differs. An input known at one time only (a checkpoint from before inputs were recorded,
    a file that is gone) is left to the config check and to the loader's own error."""
    return {f"{k} content": [saved[k], current[k]] for k in sorted(set(saved) & set(current))
            if saved[k] != current[k]}  # fmt: skip


def _listed(key: str, old, new) -> str:
    if key.endswith(" content"):  # same path, other content: the digests say so, not the (equal) paths
        return f"{flag(key.removesuffix(' content'))} content: sha256 {old[:12]}… -> {new[:12]}…"
    return f"{flag(key)}: {old!r} -> {new!r}"


def check_resume(saved: dict, current: dict, path: Path, force: bool,
                 allowed: frozenset[str] = RESUMABLE_KEYS, *, saved_inputs: dict[str, str] | None = None,
                 current_inputs: dict[str, str] | None = None) -> dict[str, list]:  # fmt: skip
    """Refuse a resume whose config changed outside `allowed`, or whose input files' content changed,
    naming each change (old -> new); with `force`, return the changes so the caller can record the
    override."""
    changes = config_changes(saved, current, allowed) | input_changes(saved_inputs or {}, current_inputs or {})
    if changes and not force:
        listed = "; ".join(_listed(k, old, new) for k, (old, new) in changes.items())
        raise FertrainError(f"refusing to resume {path}: the run's config or inputs changed ({listed}). Resuming "
                            "would mix two experiments in one run: use a new --output-dir, or --force to resume "
                            "anyway (the override is recorded in run_status.json and the history)")  # fmt: skip
    return changes
