"""Per-epoch training progress: a rich bar with img/s, loss, lr, margin and ETA."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fertrain.console import console


@contextlib.contextmanager
def epoch_progress(title: str, total_steps: int, done_steps: int = 0,
                   show: bool = True) -> Iterator[Callable[..., None]]:  # fmt: skip
    """Yield `update(images=, loss=, lr=, margin=)`, called once per optimizer step (margin None: not shown;
    loss NaN: not read yet, the loss is read from the device every few steps)."""
    start = time.perf_counter()
    seen = 0
    if not show:
        yield lambda **_: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[cyan]{task.fields[rate]}"), TextColumn("{task.fields[stats]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(title, total=total_steps, completed=done_steps, rate="", stats="")

        def update(images: int, loss: float, lr: float, margin: float | None = None) -> None:
            nonlocal seen
            seen += images
            rate = seen / max(1e-9, time.perf_counter() - start)
            m = "" if margin is None else f" m {margin:.3f}"
            shown = f"loss {loss:.4f} " if math.isfinite(loss) else ""
            progress.update(task, advance=1, rate=f"{rate:,.0f} img/s", stats=f"{shown}lr {lr:.2e}{m}")

        yield update
