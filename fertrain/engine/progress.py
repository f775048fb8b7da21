"""Per-epoch training progress: a rich bar with img/s, loss, lr, margin and ETA.

Fits an 80-column terminal (the bar itself is dropped below 100 columns, never the numbers),
and draws nothing when the output is not a terminal (`make demo | tee log`): the per-epoch
lines the trainer prints are the record there.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fertrain.console import console

WIDE = 100  # columns from which the bar is drawn


@contextlib.contextmanager
def epoch_progress(title: str, total_steps: int, done_steps: int = 0,
                   show: bool = True) -> Iterator[Callable[..., None]]:  # fmt: skip
    """Yield `update(images=, loss=, lr=, margin=)`, called once per optimizer step (margin None: not shown;
    loss NaN: not read yet, the loss is read from the device every few steps)."""
    start = time.perf_counter()
    seen = 0
    if not show or not console.is_terminal:
        yield lambda **_: None
        return
    bar = (BarColumn(bar_width=20),) if console.width >= WIDE else ()
    columns = (TextColumn("[bold]{task.description}"), *bar, MofNCompleteColumn(),
               TextColumn("[cyan]{task.fields[rate]}"), TextColumn("{task.fields[stats]}"), TextColumn("eta"),
               TimeRemainingColumn(compact=True))  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(title, total=total_steps, completed=done_steps, rate="", stats="")

        def update(images: int, loss: float, lr: float, margin: float | None = None) -> None:
            nonlocal seen
            seen += images
            rate = seen / max(1e-9, time.perf_counter() - start)
            m = "" if margin is None else f" m {margin:.2f}"
            shown = f"loss {loss:.3f} " if math.isfinite(loss) else ""
            progress.update(task, advance=1, rate=f"{rate:,.0f} img/s", stats=f"{shown}lr {lr:.1e}{m}")

        yield update
