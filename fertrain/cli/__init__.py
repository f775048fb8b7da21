"""`fertrain` command line. Modules here only parse flags and call library functions."""

from __future__ import annotations

import os
import sys

import typer

from fertrain import __version__
from fertrain.cli import (
    bench_cmd,
    demo_cmd,
    export_cmd,
    manifest_cmd,
    runs_cmd,
    student_cmd,
    teacher_cmd,
    teachers_cmd,
)
from fertrain.console import console
from fertrain.errors import FertrainError
from fertrain.runs.signals import RunInterrupted

app = typer.Typer(
    name="fertrain",
    help="From raw facial-expression datasets to a small, calibrated, deployable model.\n\n"
    "Examples:\n\n"
    "  fertrain manifest build --source fer2013=data/fer2013 --out outputs/manifests/fer2013.parquet\n\n"
    "  fertrain manifest inspect outputs/manifests/fer2013.parquet\n\n"
    "  fertrain teacher --stage A --manifest outputs/manifests/fer2013.parquet --backbone resnet18\n\n"
    "  fertrain student --manifest M.parquet --softlabels softlabels.parquet --loss dkd\n\n"
    "  fertrain runs list outputs/teachers\n\n"
    "  fertrain demo run --out outputs/demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(manifest_cmd.app, name="manifest")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(demo_cmd.app, name="demo")
app.add_typer(export_cmd.app, name="export")
app.add_typer(bench_cmd.app, name="bench")
app.command("teacher", help=teacher_cmd.HELP)(teacher_cmd.teacher)
app.command("calibrate")(teachers_cmd.calibrate)
app.command("ensemble")(teachers_cmd.ensemble)
app.command("evaluate")(teachers_cmd.evaluate)
app.command("export-softlabels")(teachers_cmd.export_softlabels)
app.command("student", help=student_cmd.HELP)(student_cmd.student)
app.command("demo-data")(demo_cmd.demo_data)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fertrain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """fertrain command line."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors become one red line and exit code 2 (no traceback)."""
    if "torch" not in sys.modules:  # OpenMP reads it when torch loads: idle threads sleep instead of spinning
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # (see engine.device.configure_cpu_threads)
    try:
        app(args=argv, prog_name="fertrain")
    except RunInterrupted as exc:
        console.print(f"[bold yellow]stopped:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[bold yellow]stopped:[/] interrupted (Ctrl-C)", markup=True, highlight=False)
        raise SystemExit(130) from None
    except FertrainError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise SystemExit(2) from None
