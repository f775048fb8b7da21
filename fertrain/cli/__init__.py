"""`fertrain` command line. Modules here only parse flags and call library functions."""

from __future__ import annotations

import faulthandler
import sys

import typer
from typer.exceptions import TyperException

from fertrain import __version__
from fertrain.cli import (
    bench_cmd,
    demo_cmd,
    export_cmd,
    manifest_cmd,
    pipeline_cmd,
    predict_cmd,
    runs_cmd,
    student_cmd,
    teacher_cmd,
    teachers_cmd,
)
from fertrain.console import console
from fertrain.cores import let_idle_openmp_threads_sleep
from fertrain.errors import FertrainError
from fertrain.runs.signals import RunInterrupted

HELP = """From raw facial-expression datasets to a small, calibrated, deployable model.

\b
Examples:
  fertrain demo run --out outputs/demo
  fertrain manifest build --source fer2013=../shared/datasets/fer2013 --out M.parquet
  fertrain manifest inspect M.parquet
  fertrain teacher --manifest M.parquet --backbone resnet18 --img-size 112
  fertrain export-softlabels --teacher RUN --manifest M.parquet --out SL.parquet
  fertrain student --manifest M.parquet --softlabels SL.parquet --loss dkd
  fertrain predict RUN photos/ --out faces.csv
  fertrain runs list outputs
"""
# Plain click help (rich_markup_mode=None): option names never cut, wrapped at the terminal width.
app = typer.Typer(name="fertrain", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
app.add_typer(manifest_cmd.app, name="manifest")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.add_typer(demo_cmd.app, name="demo")
app.add_typer(export_cmd.app, name="export")
app.add_typer(bench_cmd.app, name="bench")
app.command("teacher", help=teacher_cmd.HELP)(teacher_cmd.teacher)
app.command("calibrate")(teachers_cmd.calibrate)
app.command("ensemble")(teachers_cmd.ensemble)
app.command("evaluate")(teachers_cmd.evaluate)
app.command("export-softlabels")(teachers_cmd.export_softlabels)
app.command("student", help=student_cmd.HELP)(student_cmd.student)
app.command("predict", help=predict_cmd.HELP)(predict_cmd.predict)
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


def enable_fatal_tracebacks() -> None:
    """A process killed by a fatal signal (a segfault or abort in native code: CUDA, a compiled kernel,
    a C extension) writes every thread's Python stack to stderr, the run's log, before it dies: without
    it an overnight run that died there leaves only its stale lock, with no word of where it was."""
    if faulthandler.is_enabled():  # PYTHONFAULTHANDLER, python -X faulthandler, pytest: already where asked
        return
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by an object without a descriptor
        return
    faulthandler.enable(all_threads=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors (bad flags and values included) become one red line and
    exit code 2, never a traceback; a stopped run says how to resume."""
    let_idle_openmp_threads_sleep()
    enable_fatal_tracebacks()
    try:
        code = app(args=argv, prog_name="fertrain", standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except TyperException as exc:  # a flag or value the parser refused: one line, the command's help named
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "fertrain"
        console.print(f"[bold red]error:[/] {exc.format_message()} (see `{command} --help`)", soft_wrap=True,
                      markup=True, highlight=False)  # fmt: skip
        raise SystemExit(2) from None
    except RunInterrupted as exc:
        from fertrain.engine.distributed import from_environment  # loaded already: a run was stopped

        if from_environment().is_main:  # under torchrun every rank stops at the same step: said once
            console.print(f"[bold yellow]stopped:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[bold yellow]stopped:[/] interrupted (Ctrl-C)", markup=True, highlight=False)
        raise SystemExit(130) from None
    except FertrainError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise SystemExit(2) from None
