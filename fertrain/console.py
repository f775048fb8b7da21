"""Shared rich console and a progress bar that shows items/s and ETA.

Bars fit an 80-column terminal (the bar graphic is dropped below 100 columns, never the
numbers). When the output is not a terminal (a log file, `| tee`), plain lines are printed at
every tenth of the work instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

console = Console(stderr=True)
WIDE = 100  # columns from which bars are drawn


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "it", show: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` function; renders a bar with rate and ETA when `show`."""
    if not show:
        yield lambda n: None
        return
    if not console.is_terminal:
        with plain_progress(description, total, unit) as advance:
            yield advance
        return
    bar = (BarColumn(bar_width=20),) if console.width >= WIDE else ()
    columns = (TextColumn("[bold]{task.description}"), *bar, MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("[cyan]{task.fields[rate]}"), TextColumn("eta"), TimeRemainingColumn(compact=True))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[task].speed
            progress.update(task, rate=f"{speed:,.0f} {unit}/s" if speed else "")

        yield advance


@contextlib.contextmanager
def plain_progress(description: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """One line at every tenth of `total` (and at the end): for logs, where a live bar is noise."""
    start, done, next_tenth = time.perf_counter(), 0, 1

    def advance(n: int) -> None:
        nonlocal done, next_tenth
        done += n
        if total and done * 10 >= next_tenth * total:
            rate = done / max(1e-9, time.perf_counter() - start)
            console.print(f"{description}: {done:,}/{total:,} {unit} ({100 * done / total:.0f} %), "
                          f"{rate:,.0f} {unit}/s", highlight=False, soft_wrap=True)  # fmt: skip
            next_tenth = done * 10 // total + 1

    yield advance
