"""`fertrain manifest build | clean | inspect | verify | adapters`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fertrain.cli.options import at_least
from fertrain.console import console
from fertrain.errors import ConfigError, StampMismatchError

app = typer.Typer(help="Build, clean, inspect and verify SHA-stamped manifests.\n\n\b\nExamples:\n"
                  "  fertrain manifest build --source fer2013=../shared/datasets/fer2013 --out M.parquet\n"
                  "  fertrain manifest clean M.parquet --softlabels oof.parquet --drop-below 0.05 --out C.parquet\n"
                  "  fertrain manifest inspect M.parquet\n  fertrain manifest verify M.parquet --hash-images\n"
                  "  fertrain manifest adapters", no_args_is_help=True, rich_markup_mode=None)  # fmt: skip

BUILD_HELP = """Build a manifest from a YAML recipe or from --source flags.

Writes FILE, FILE.sha256 (sha256 of FILE), FILE.summary.json (counts by source x split x class, drops by \
reason, dedup results) and FILE.dedup.csv (every duplicate pair).

\b
Examples:
  fertrain manifest build manifests/demo.yaml
  fertrain manifest build --source fer2013=../shared/datasets/fer2013 --out M.parquet
  fertrain manifest build --source ferplus=../shared/datasets/ferplus
      -o ferplus.fer2013_csv=../shared/datasets/fer2013_csv/fer2013.csv -o ferplus.mode=probability --out M.csv
"""


def build_warnings(summary: dict) -> list[str]:
    """What a build accepted but a person should know: empty class folders, very large images."""
    out = []
    for source, info in summary.get("sources", {}).items():
        notes = info.get("notes", {})
        for folder in notes.get("empty_folders", []):
            out.append(f"{source}: class folder {folder} has no images")
        large = notes.get("large_images", [])
        if large:
            out.append(f"{source}: {len(large)} image(s) over 4096 px on a side (first: {large[0]}); faces are "
                       "decoded whole before cropping, so loading them is slow")  # fmt: skip
    return out


@app.command("build", help=BUILD_HELP)
def build(
    recipe: Path | None = typer.Argument(None, help="Recipe YAML (see manifests/)."),
    source: list[str] = typer.Option([], "--source", "-s", help="ADAPTER=PATH or ADAPTER:NAME=PATH (repeatable)."),
    option: list[str] = typer.Option([], "--option", "-o", help="SOURCE.KEY=VALUE adapter option (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Output manifest (.csv or .parquet); overrides the recipe."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count bad rows instead of stopping."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing manifest with different content."),
    dedup_exact: str | None = typer.Option(None, help="Exact duplicates: off|report|drop [recipe, else report]."),
    dedup_near: str | None = typer.Option(None, help="Near duplicates: off|report|drop [recipe, else report]."),
    near_threshold: int | None = typer.Option(None, help="Near-duplicate Hamming distance in bits [2].",
                                              callback=at_least(0, high=64)),
    seed: int = typer.Option(1337, help="Seed for derived splits (quick form; recipes set `seed:`).",
                             callback=at_least(0)),
    workers: int | None = typer.Option(None, help="Processes for hashing images [cores - 1].", callback=at_least(1)),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or tables."),
) -> None:
    from fertrain.manifests import DedupPolicy, build_manifest, load_recipe, recipe_from_cli
    from fertrain.manifests.tables import print_summary

    if recipe is not None and source:
        raise ConfigError("give either a RECIPE or --source flags, not both")
    if recipe is None and not source:
        raise ConfigError("nothing to build: give a RECIPE.yaml or at least one --source ADAPTER=PATH")
    if recipe is not None:
        if option:
            raise ConfigError("--option goes with --source; put adapter options in the recipe's `options:`")
        r = load_recipe(recipe)
    else:
        r = recipe_from_cli(source, option, DedupPolicy(), seed)
    overrides = {"exact": dedup_exact, "near": dedup_near, "near_threshold": near_threshold}
    r.dedup = DedupPolicy(**{**r.dedup.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})
    result = build_manifest(r, out, skip_bad=skip_bad, overwrite=overwrite, workers=workers, show_progress=not quiet)
    if not quiet:
        print_summary(result.summary)
    for line in build_warnings(result.summary):
        console.print(f"[yellow]warning:[/] {line}", soft_wrap=True, highlight=False)
    console.print(f"[green]wrote[/] {result.path} ({len(result.df):,} rows, sha256 {result.sha256[:16]}…) "
                  f"{result.summary['totals']}", soft_wrap=True)  # fmt: skip


CLEAN_HELP = """Write a copy of MANIFEST without the training labels that out-of-fold teachers contradict.

Rows of --split whose own label gets a probability under --drop-below are dropped; with --relabel-above, \
a row whose top class (not its label) reaches that probability takes that class instead. The probabilities \
must be out of fold (each face labelled by a teacher that never saw it): `fertrain teacher --fold K --folds N` \
for K = 0..N-1, then `fertrain export-softlabels --out-of-fold`. MANIFEST is not modified; the new manifest \
keeps the row ids and writes OUT.sha256, OUT.summary.json (what it was derived from, counts per class) and \
OUT.label_issues.csv (every dropped or relabelled row with its probabilities).

\b
Examples:
  fertrain manifest clean M.parquet --softlabels oof_ten.parquet --drop-below 0.05 --out M_clean.parquet
  fertrain manifest clean M.parquet --softlabels oof_ten.parquet --relabel-above 0.7 --out M_relabel.parquet
  fertrain teacher --config fertrain/configs/fer2013_vgg.yaml -m M_clean.parquet
"""


@app.command("clean", help=CLEAN_HELP)
def clean(
    manifest: Path = typer.Argument(..., help="Manifest to clean (left unchanged)."),
    softlabels: Path = typer.Option(..., "--softlabels", help="Out-of-fold soft labels of MANIFEST's rows."),
    out: Path = typer.Option(..., "--out", help="The cleaned manifest (.csv or .parquet)."),
    drop_below: float = typer.Option(0.0, "--drop-below", help="Drop rows whose own label gets less than this."),
    relabel_above: float | None = typer.Option(None, "--relabel-above",
                                               help="Relabel rows whose top other class gets at least this."),
    split: str = typer.Option("train", "--split", help="The split to clean; the others are copied unchanged."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT with different content."),
) -> None:
    from fertrain.softlabels.cleaning import CleaningPolicy, clean_manifest

    result = clean_manifest(manifest, softlabels, out, CleaningPolicy(drop_below, relabel_above, split),
                            overwrite=overwrite)  # fmt: skip
    info = result.summary["label_cleaning"]
    console.print(f"{info['rows_considered']:,} '{split}' rows: {info['dropped']:,} dropped, {info['relabelled']:,} "
                  f"relabelled ({info['report']})", soft_wrap=True, highlight=False)  # fmt: skip
    for name, c in info["per_class"].items():
        console.print(f"  {name:<9} {c['rows']:>6,} rows  -{c['dropped']:<5,} dropped  -{c['relabelled_from']:<5,} "
                      f"+{c['relabelled_to']:<5,} relabelled", highlight=False)  # fmt: skip
    console.print(f"[green]wrote[/] {result.path} ({len(result.df):,} rows, sha256 {result.sha256[:16]}…) "
                  f"{result.summary['totals']}", soft_wrap=True)  # fmt: skip


@app.command("inspect")
def inspect(manifest: Path = typer.Argument(..., help="Manifest file (.csv or .parquet).")) -> None:
    """Print counts by source x split x class, drops and duplicates, and verify the stamp.

    \b
    Example:
      fertrain manifest inspect outputs/manifests/fer2013.parquet
    """
    from fertrain.manifests import check_stamp, count_table, load_manifest, summary_path
    from fertrain.manifests.imageprobe import sha256_file
    from fertrain.manifests.tables import print_summary

    m = load_manifest(manifest, verify_stamp=False)
    sp = summary_path(manifest)
    summary = json.loads(sp.read_text(encoding="utf-8")) if sp.is_file() else {}
    digest, problems = sha256_file(manifest), []
    try:
        check_stamp(manifest)
    except StampMismatchError as exc:
        problems.append(f"[bold red]stamp: FAILED[/] {exc}")
    if summary and summary.get("sha256") != digest:  # a build stopped between writing the manifest and its summary
        problems.append(f"[bold red]summary: STALE[/] {sp.name} describes sha256 {str(summary.get('sha256'))[:12]}…, "
                        f"not this manifest ({digest[:12]}…); its drops and duplicates are not shown. Rebuild the "
                        "manifest to refresh it")  # fmt: skip
        summary = {}
    print_summary(summary, counts=count_table(m.df))
    if "label_cleaning" in summary:
        info, src = summary["label_cleaning"], summary.get("derived_from", {})
        console.print(f"cleaned from {src.get('manifest')} (sha256 {str(src.get('sha256'))[:12]}…) with "
                      f"{info['softlabels']}: {info['dropped']:,} dropped, {info['relabelled']:,} relabelled "
                      f"({info['report']})", soft_wrap=True, highlight=False)  # fmt: skip
    console.print(f"{len(m.df):,} rows; splits {m.df['split'].value_counts().sort_index().to_dict()}; "
                  f"soft labels: {'yes' if m.has_soft_labels else 'no'}", soft_wrap=True)  # fmt: skip
    for line in problems:
        console.print(line, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]stamp: OK[/] sha256 {digest}" + (", summary matches" if summary else ""))


@app.command("verify")
def verify(
    manifest: Path = typer.Argument(..., help="Manifest file."),
    hash_images: bool = typer.Option(False, "--hash-images", help="Also re-hash every image and compare sha256."),
    workers: int | None = typer.Option(None, help="Processes [cores - 1].", callback=at_least(1)),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Check the stamp and that every image exists (and, with --hash-images, is unchanged).

    \b
    Example:
      fertrain manifest verify outputs/manifests/fer2013.parquet --hash-images
    """
    from fertrain.manifests import verify_manifest

    report = verify_manifest(manifest, hash_images=hash_images, workers=workers, show_progress=not quiet)
    console.print(f"stamp: {'[green]OK' if report.stamp_ok else '[red]FAILED'}[/] {report.stamp_error or ''}",
                  soft_wrap=True)  # fmt: skip
    console.print(f"images: {report.rows - len(report.missing):,}/{report.rows:,} present"
                  + (f", {len(report.hash_mismatch):,} hash mismatches" if hash_images else "")
                  + (f", {len(report.outside_root):,} outside their root" if report.outside_root else ""))  # fmt: skip
    for label, items in (("missing", report.missing), ("changed", report.hash_mismatch),
                         ("outside the root", report.outside_root)):  # fmt: skip
        for row_id, path in items[:20]:
            console.print(f"  [red]{label}[/] {row_id} ({path})", soft_wrap=True, highlight=False)
        if len(items) > 20:
            console.print(f"  … and {len(items) - 20:,} more {label}")
    if not report.ok:
        raise typer.Exit(1)
    console.print("[green]manifest verified[/]")


@app.command("adapters")
def adapters() -> None:
    """List the dataset adapters and their options (with defaults).

    \b
    Example:
      fertrain manifest adapters
    """
    from fertrain.manifests.adapters import ADAPTERS

    t = Table(title="adapters")
    for col in ("adapter", "layout", "options (default)"):
        t.add_column(col)
    for a in ADAPTERS.values():
        t.add_row(a.name, a.doc, ", ".join(f"{k}={v!r}" for k, v in a.defaults.items()) or "-")
    console.print(t)
