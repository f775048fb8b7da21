"""`fertrain demo-data OUT` and `fertrain demo run` (what `make demo` calls)."""

from __future__ import annotations

from pathlib import Path

import typer

from fertrain.cli.options import at_least
from fertrain.console import console

app = typer.Typer(help="The embedded synthetic demo: data and the end-to-end pipeline (what `make demo` runs)."
                  "\n\n\b\nExamples:\n  fertrain demo run --out outputs/demo\n  fertrain demo-data outputs/demo/data",
                  no_args_is_help=True, rich_markup_mode=None)  # fmt: skip


def demo_data(
    out: Path = typer.Argument(..., help="Folder to write lowres/ and hires/ into."),
    seed: int = typer.Option(1337, help="Rendering seed (same seed, same bytes).", callback=at_least(0)),
    scale: float = typer.Option(1.0, help="Multiply the number of images per class.",
                                callback=at_least(0, strict=True)),
) -> None:
    """Render the synthetic face-expression dataset (two sources, FER2013 folder layout).

    \b
    Example:
      fertrain demo-data outputs/demo/data
    """
    from fertrain.demo.dataset import write_demo_dataset

    counts = write_demo_dataset(out, seed=seed, scale=scale)
    for source, by_split in counts.items():
        console.print(f"{out / source}: {by_split}")


@app.command("run")
def run(
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Demo run directory."),
    seed: int = typer.Option(1337, help="Seed for data and splits.", callback=at_least(0)),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over a crashed run's lock."),
    teachers: bool = typer.Option(True, "--teachers/--no-teachers", help="Train the Stage A/B demo teachers."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the demo pipeline: data -> manifest -> Stage A/B teachers -> calibration -> ensemble -> soft labels
    -> DKD student -> ONNX.

    \b
    Example:
      fertrain demo run --out outputs/demo
    """
    from fertrain.demo.pipeline import run_demo
    from fertrain.demo.report import print_stage

    run_demo(out, seed=seed, recover_stale=recover_stale_lock, teachers=teachers, show_progress=not quiet,
             report=print_stage)
    console.print("[green]demo complete[/]")
