"""`fertrain runs list | compare | clean`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from fertrain.console import console
from fertrain.errors import FertrainError

if TYPE_CHECKING:  # the commands import the run layer when they run, so `fertrain --help` stays quick
    from fertrain.runs.compare import SeedGroup, Spread

app = typer.Typer(help="List, compare and clean run directories (lock-aware).\n\n\b\nExamples:\n"
                  "  fertrain runs list outputs\n  fertrain runs compare outputs/teachers --plot compare.png\n"
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


def _pair(first: float | None, second: float | None) -> str:
    return "-" if first is None else f"{first:.3f} / {second:.3f}"


def _spread(value: Spread | None) -> str:
    """mean ± std (mean alone for one seed)."""
    if value is None:
        return "-"
    return f"{value.mean:.3f}" + ("" if value.std is None else f" ± {value.std:.3f}")


def _spread_pair(first: Spread | None, second: Spread | None) -> str:
    return "-" if first is None else f"{_spread(first)} / {_spread(second)}"


def _headers(labels: list[str]) -> tuple[list[str], str]:
    """Column headers for evaluation labels (MANIFEST SPLIT TTA): the manifest goes to the title
    when all share one, and single view is the split alone."""
    manifests = {label.rsplit(" ", 2)[0] for label in labels}  # a manifest's name may hold spaces
    shared = len(manifests) == 1
    heads = []
    for label in labels:
        manifest, split, tta = label.rsplit(" ", 2)
        head = split if tta == "none" else f"{split} {tta}"
        heads.append(head if shared else f"{manifest} {head}")
    return heads, (f" on {manifests.pop()}" if shared else "")


@app.command("compare")
def compare(
    paths: list[Path] = typer.Argument(..., help="Run directories, ensemble JSONs, or folders holding them."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the runs' validation curves to this PNG."),
    json_out: Path | None = typer.Option(None, "--json", help="Write every row (per-class recall included) as JSON."),
    sort: str = typer.Option("none", "--sort", help="Order rows by: none (as given), val-acc, val-f1."),
    seeds: bool = typer.Option(False, "--seeds", help="One row per experiment: runs whose config.yaml differ only "
                               "in --seed (and where or how fast they ran) as mean ± sample std over the seeds "
                               "(--json writes these rows)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No table (with --json / --plot)."),
) -> None:
    """Runs and ensembles side by side: best epoch, validation accuracy / macro-F1 at it, training
    time and img/s, and every `fertrain evaluate` report (MANIFEST SPLIT TTA: acc / macro-F1).

    Reads only what the runs wrote (history.json, config.yaml, evaluation_*.json), so it is
    instant and works on runs still training. A folder stands for every run and evaluated
    ensemble under it.

    \b
    Examples:
      fertrain runs compare outputs/teachers --plot compare.png
      fertrain runs compare out/teachers/drop out/teachers/zoom out/ens_four.json --sort val-acc
      fertrain runs compare out --json summary.json -q
      fertrain runs compare out/students --seeds    # mean ± std over each experiment's seeds
    """
    from fertrain.atomic import atomic_write_json
    from fertrain.plots import plot_comparison
    from fertrain.runs.compare import compare_runs, evaluation_labels, seed_groups

    rows = compare_runs(paths, sort=sort)
    trained = [r for r in rows if r.curve]
    if plot is not None and not trained:
        raise FertrainError(f"--plot {plot}: none of {', '.join(r.name for r in rows)} has an evaluated epoch "
                            "in a history.json to draw (ensembles have no training curves)")  # fmt: skip
    groups = seed_groups(rows) if seeds else None
    if json_out is not None:
        atomic_write_json(json_out, [r.to_dict() for r in groups or rows])
    if plot is not None:
        plot_comparison({r.name: r.curve for r in trained}, {r.name: r.best_epoch for r in trained}, plot)
    if quiet:
        return
    labels = evaluation_labels(rows)
    written = [str(p) for p in (json_out, plot) if p is not None]
    wrote = f"; wrote {', '.join(written)}" if written else ""
    if groups is not None:
        _print_groups(groups, labels)
        console.print(f"{len(rows)} run(s) in {len(groups)} experiment(s){wrote}", soft_wrap=True)
        return
    heads, where = _headers(labels)
    t = Table(title=f"acc / macro-F1: at the best epoch (training) and from `fertrain evaluate`{where}",
              title_justify="left")  # fmt: skip
    t.add_column("run", overflow="fold", ratio=2)
    for name in ("epochs", "best", "training", "min", "img/s", *heads):
        t.add_column(name, overflow="fold", justify="right")
    for r in rows:
        epochs = "-" if r.epochs_done is None else f"{r.epochs_done}/{r.epochs or '?'}"
        best = "-" if r.best_epoch is None else f"{r.best_epoch}{' EMA' if r.best_weights == 'ema' else ''}"
        evals = [_pair(r.evaluations[k].accuracy, r.evaluations[k].macro_f1) if k in r.evaluations else "-"
                 for k in labels]  # fmt: skip
        t.add_row(r.name, epochs, best, _pair(r.val_accuracy, r.val_macro_f1),
                  "-" if r.train_minutes is None else f"{r.train_minutes:.1f}",
                  "-" if r.median_img_per_sec is None else f"{r.median_img_per_sec:,.0f}", *evals)  # fmt: skip
    console.print(t)
    console.print(f"{len(rows)} run(s){wrote}", soft_wrap=True)


def _group_evaluation(group: SeedGroup, label: str) -> str:
    """acc / macro-F1 over the members evaluated so (how many, where not all were)."""
    if label not in group.evaluations:
        return "-"
    accuracy, macro_f1 = group.evaluations[label]["accuracy"], group.evaluations[label]["macro_f1"]
    partial = "" if accuracy.n == len(group.members) else f" ({accuracy.n} of {len(group.members)})"
    return _spread_pair(accuracy, macro_f1) + partial


def _print_groups(groups: list[SeedGroup], labels: list[str]) -> None:
    heads, where = _headers(labels)
    t = Table(title=f"acc / macro-F1, mean ± std over seeds: at the best epoch (training) and from `fertrain "
                    f"evaluate`{where}", title_justify="left")  # fmt: skip
    t.add_column("experiment", overflow="fold", ratio=2)
    for name in ("seeds", "best", "min", *heads):
        t.add_column(name, overflow="fold", justify="right")
    for g in groups:
        seeds = ", ".join("?" if s is None else str(s) for s in g.seeds) if g.kind == "run" else "-"
        evals = [_group_evaluation(g, k) for k in labels]
        minutes = "-" if g.train_minutes is None else f"{g.train_minutes.mean:.1f}"
        t.add_row(g.name, seeds, _spread_pair(g.val_accuracy, g.val_macro_f1), minutes, *evals)
    console.print(t)


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
