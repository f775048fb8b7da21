"""`.run.lock`: one active run per output directory.

Two files work together. `.run.lock` is the JSON payload people and runners read (pid,
host, start time, command). The exclusion itself is an OS lock (filelock) on
`.run.lock.flock`, held for the whole run: the OS drops it when the process dies, so a
payload whose OS lock is free was left by a crash (stale). The guard file is never deleted,
because unlinking a lock file while another process waits on it lets two holders in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from fertrain.atomic import atomic_write_json
from fertrain.errors import FertrainError
from fertrain.runs.signals import stop_signals
from fertrain.timestamps import local_timestamp

LOCK_NAME = ".run.lock"
GUARD_NAME = ".run.lock.flock"


class RunLockedError(FertrainError):
    """Another live process holds the run directory."""

    def __init__(self, output_dir: Path, holder: dict | None):
        self.output_dir = output_dir
        self.holder = holder
        super().__init__(f"{output_dir} is locked by a running process: {describe_holder(holder)}")


class StaleLockError(FertrainError):
    """A crashed run left its lock behind; refused unless recovery is asked for."""

    def __init__(self, output_dir: Path, holder: dict | None, reason: str):
        self.output_dir = output_dir
        self.holder = holder
        super().__init__(
            f"{output_dir} has a stale lock ({reason}): {describe_holder(holder)}. "
            "If that run is really gone, re-run with --recover-stale-lock"
        )


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "holder unknown (empty or unreadable .run.lock)"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, "
            f"command: {holder.get('command')}")  # fmt: skip


def read_lock(output_dir: str | Path) -> dict | None:
    """The payload of `.run.lock`, {} if present but unreadable, None if absent."""
    path = Path(output_dir) / LOCK_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _guard(output_dir: Path) -> FileLock:
    return FileLock(output_dir / GUARD_NAME, timeout=0)


def guard_held(output_dir: str | Path) -> bool:
    """Whether a live process holds the OS lock of `output_dir` (payload or not)."""
    guard = _guard(Path(output_dir))
    try:
        guard.acquire()
    except Timeout:
        return True
    guard.release()
    return False


def lock_state(output_dir: str | Path) -> str:
    """'free' (no payload), 'running' (OS lock held) or 'stale' (payload without a holder)."""
    output_dir = Path(output_dir)
    if not (output_dir / LOCK_NAME).exists():
        return "free"
    return "running" if guard_held(output_dir) else "stale"


def stale_reason(holder: dict | None) -> str:
    if not holder:
        return "unreadable payload"
    if holder.get("host") != socket.gethostname():
        return f"recorded on host {holder.get('host')}, which this machine cannot check"
    if pid_alive(int(holder.get("pid", -1))):
        return f"pid {holder.get('pid')} is alive but does not hold the lock (pid reused?)"
    return f"pid {holder.get('pid')} is no longer running on this host"


def default_command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def check_lock_files(output_dir: Path) -> None:
    """The lock files must be what fertrain writes: a regular `.run.lock`, a guard that is no symlink."""
    for name in (LOCK_NAME, GUARD_NAME):
        path = output_dir / name
        if path.is_symlink():
            raise FertrainError(f"{path} is a symbolic link; fertrain does not follow links for its lock files "
                                "(remove it, after making sure no run uses this directory)")  # fmt: skip
        if path.exists() and not path.is_file():
            raise FertrainError(f"{path} is not a file (a directory?); remove it, after making sure no run uses "
                                "this directory")  # fmt: skip


def holder_of(output_dir: Path, wait: float = 2.0) -> dict | None:
    """The payload of a lock that is held: a holder that just won the race may not have written
    it yet, so read again for up to `wait` seconds before calling it unknown."""
    deadline = time.monotonic() + wait
    while True:
        holder = read_lock(output_dir)
        if holder or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)


TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # fertrain.atomic's temp files


def remove_stale_temps(output_dir: Path) -> list[Path]:
    """Temp files an interrupted atomic write left in the run directory (only its holder writes
    there, so under the lock any such file is abandoned)."""
    stale = [p for p in output_dir.iterdir() if p.is_file() and TEMP_PATTERN.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def run_lock(output_dir: str | Path, *, recover_stale: bool = False, command: str | None = None) -> Iterator[dict]:
    """Hold `output_dir/.run.lock` for the duration of the block.

    Raises RunLockedError at once (no waiting) when another live process holds it, and
    StaleLockError for a crashed holder unless `recover_stale`. Yields the payload written.
    While it is held, SIGTERM/SIGHUP/SIGINT raise RunInterrupted so the lock is released.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_lock_files(output_dir)
    guard = _guard(output_dir)
    try:
        guard.acquire()
    except Timeout:
        raise RunLockedError(output_dir, holder_of(output_dir)) from None
    try:
        previous = read_lock(output_dir)
        if previous is not None and not recover_stale:
            raise StaleLockError(output_dir, previous, stale_reason(previous))
        payload = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": local_timestamp(),
            "command": command or default_command(),
        }
        if previous is not None:
            payload["recovered_from"] = previous
        atomic_write_json(output_dir / LOCK_NAME, payload)
        remove_stale_temps(output_dir)
        try:
            with stop_signals():
                yield payload
        finally:
            (output_dir / LOCK_NAME).unlink(missing_ok=True)
    finally:
        guard.release()
