"""`fertrain runs list` / `runs clean`: see and remove run directories, never a live one."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fertrain.errors import FertrainError
from fertrain.runs.lock import GUARD_NAME, LOCK_NAME, describe_holder, guard_held, lock_state, read_lock
from fertrain.runs.report_paths import RUN_CONFIG
from fertrain.runs.status import STATUS_NAME, read_status

RUN_MARKERS = (LOCK_NAME, STATUS_NAME, "environment.json")


@dataclass
class RunInfo:
    path: Path
    state: str  # running | stale | finished | failed | unknown
    command: str | None
    started: str | None
    ended: str | None
    detail: str = ""


def is_run_dir(path: Path) -> bool:
    return any((path / m).exists() for m in RUN_MARKERS)


def run_info(path: Path) -> RunInfo:
    lock = lock_state(path)
    holder = read_lock(path) if lock != "free" else None
    status = read_status(path)
    if lock in ("running", "stale"):
        return RunInfo(path, lock, (holder or {}).get("command"), (holder or {}).get("started"), None,
                       describe_holder(holder))  # fmt: skip
    state = status.get("status") if status.get("status") in ("finished", "failed") else "unknown"
    return RunInfo(path, state, status.get("command"), status.get("started"), status.get("ended"),
                   status.get("error") or "")  # fmt: skip


def find_runs(root: str | Path) -> list[RunInfo]:
    """Every run directory under `root`, nested ones included, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FertrainError(f"{root}: not a directory")
    runs = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here):  # runs may nest (the demo pipeline holds teacher runs), so keep walking
            runs.append(run_info(here))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(runs, key=lambda r: str(r.path))


def _inside(path: Path, root: Path) -> bool:
    return path != root and root in path.parents


def is_recognisable_run(path: Path) -> bool:
    """A directory fertrain made for a run: it has a run_status.json or a config.yaml."""
    return (path / STATUS_NAME).is_file() or (path / RUN_CONFIG).is_file()


def locks_inside(path: Path) -> list[str]:
    """Every lock under `path` (any depth): a payload (running or stale) or a guard some process holds."""
    found = []
    for dp, _, files in os.walk(path):
        here = Path(dp)
        if LOCK_NAME in files:
            found.append(f"{here} is locked ({lock_state(here)}): {describe_holder(read_lock(here))}")
        elif GUARD_NAME in files and guard_held(here):
            found.append(f"{here} is locked: a process holds its {GUARD_NAME}")
    return found


def clean_runs(dirs: list[str | Path], root: str | Path, *, dry_run: bool = False) -> list[Path]:
    """Delete run directories under `root`. Every target is checked before anything is removed.

    Refused: a path outside `root` (after resolving links) or `root` itself, a missing path, a
    directory that is not recognisably a run (no run_status.json or config.yaml), and any
    directory holding a run lock (a payload, or a held OS lock) at any depth.
    """
    root_r = Path(root).resolve()
    problems, targets = [], []
    for d in dirs:
        p = Path(d)
        resolved = p.resolve()
        if not resolved.is_dir():
            problems.append(f"{p}: not a directory")
            continue
        if not _inside(resolved, root_r):
            problems.append(f"{p}: outside the root {root_r} (refusing to delete)")
            continue
        if not is_recognisable_run(resolved):
            problems.append(f"{p}: not a run directory (no {STATUS_NAME} or {RUN_CONFIG}); refusing to delete it")
            continue
        locked = locks_inside(resolved)
        problems += [f"{p}: {what}" for what in locked]
        if not locked:
            targets.append(resolved)
    if problems:
        raise FertrainError("nothing deleted:\n  " + "\n  ".join(problems))
    if not dry_run:
        for t in targets:
            shutil.rmtree(t)
    return targets
