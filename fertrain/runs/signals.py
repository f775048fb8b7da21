"""SIGTERM, SIGHUP and SIGINT end a locked command cleanly, so a re-queued job resumes by itself.

While a command holds a run lock, these signals raise `RunInterrupted` (SIGINT's usual
KeyboardInterrupt, for the other two as well), so every `finally` runs: the lock is released
and `run_status.json` says `interrupted`, and a plain re-run continues from the last checkpoint.
A training loop can ask for a cooperative stop instead (`cooperative_stop()`): the signal only
sets a flag, the loop finishes the optimizer step it is in, saves its checkpoint and then raises
`RunInterrupted`; a second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from fertrain.errors import FertrainError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))
_state: dict = {"requested": None, "cooperative": 0, "depth": 0}


class RunInterrupted(FertrainError):
    """A command stopped by a signal; re-running it resumes what was saved."""

    def __init__(self, signame: str, detail: str = ""):
        self.signame = signame
        number = getattr(signal, signame, None)
        self.exit_code = 128 + int(number) if number is not None else 130
        super().__init__(f"interrupted by {signame}{': ' + detail if detail else ''}; re-run the same command to "
                         "resume")  # fmt: skip


def _handle(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    if _state["cooperative"] and _state["requested"] is None:
        _state["requested"] = name  # the training loop stops at the next step boundary
        return
    raise RunInterrupted(name)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, STOP_SIGNALS raise RunInterrupted (main thread only; nested blocks share it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        if _state["depth"] == 0:
            _state["requested"] = None


@contextlib.contextmanager
def cooperative_stop() -> Iterator[None]:
    """Within the block a first stop signal only sets `stop_requested()`; the caller stops itself."""
    _state["cooperative"] += 1
    try:
        yield
    finally:
        _state["cooperative"] -= 1


def stop_requested() -> str | None:
    """The name of the signal that asked to stop, or None."""
    return _state["requested"]
