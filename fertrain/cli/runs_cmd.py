"""`fertrain runs list | clean`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fertrain.console import console

app = typer.Typer(help="List and clean run directories (lock-aware).\n\n\b\nExamples:\n  fertrain runs list outputs\n"
                  "  fertrain runs clean --root outputs outputs/teachers/RUN --dry-run", no_args_is_help=True,
                  rich_markup_mode=None)  # fmt: skip
STATE_STYLE = {"running": "green", "stale": "yellow", "failed": "red", "finished": "cyan", "unknown": "dim"}


@app.command("list")
def list_runs(root: Path = typer.Argument(..., help="Folder to search, e.g. outputs/teachers.")) -> None:
    """Show every run under ROOT as running / finished / stale / failed.

    \b
    Example:
      fertrain runs list outputs/teachers
    """
    from fertrain.runs import find_runs

    runs = find_runs(root)
    t = Table(title=f"runs under {root}", title_justify="left")
    # paths and commands fold instead of being cut, so two long run names stay readable at 80 columns
    t.add_column("run", overflow="fold", ratio=3)
    t.add_column("state", no_wrap=True)
    t.add_column("started", overflow="fold")
    t.add_column("command / detail", overflow="fold", ratio=3)
    for r in runs:
        style = STATE_STYLE.get(r.state, "")
        rel = r.path.relative_to(root) if r.path != root else Path(".")
        detail = r.detail if r.state in ("stale", "failed") else (r.command or "")
        t.add_row(str(rel), f"[{style}]{r.state}[/]", (r.started or "").replace("T", " ")[:16], detail)
    console.print(t)
    console.print(f"{len(runs)} run(s)")


@app.command("clean")
def clean(
    dirs: list[Path] = typer.Argument(..., help="Run directories to delete."),
    root: Path = typer.Option(..., "--root", help="Only directories inside this folder may be deleted."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted; delete nothing."),
) -> None:
    """Delete run directories; refuses locked ones and anything outside --root.

    \b
    Example:
      fertrain runs clean --root outputs/teachers outputs/teachers/RN18_resnet18_seed1337_stageA_img224
    """
    from fertrain.runs import clean_runs

    removed = clean_runs(dirs, root, dry_run=dry_run)
    for p in removed:
        console.print(f"{'would delete' if dry_run else 'deleted'} {p}", soft_wrap=True)
