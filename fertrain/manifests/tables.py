"""Rich renderings of manifest summaries, shared by `manifest build`, `manifest inspect` and the demo."""

from __future__ import annotations

from rich.table import Table

from fertrain.console import console
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.schema import SPLITS


def counts_tables(counts: dict) -> list[Table]:
    """One table per source: splits as rows, classes as columns, totals on the right and below."""
    tables = []
    for source, by_split in counts.items():
        t = Table(title=f"source: {source}", title_justify="left")
        t.add_column("split")
        for name in CLASS_NAMES:
            t.add_column(name, justify="right")
        t.add_column("total", justify="right", style="bold")
        col_totals = [0] * len(CLASS_NAMES)
        for split in [s for s in SPLITS if s in by_split]:
            row = [by_split[split].get(n, 0) for n in CLASS_NAMES]
            col_totals = [a + b for a, b in zip(col_totals, row, strict=True)]
            t.add_row(split, *(f"{v:,}" for v in row), f"{sum(row):,}")
        t.add_row("all", *(f"{v:,}" for v in col_totals), f"{sum(col_totals):,}", style="bold")
        tables.append(t)
    return tables


def drops_table(drops: dict) -> Table | None:
    rows = [(src, reason, n) for src, reasons in drops.items() for reason, n in reasons.items() if n]
    if not rows:
        return None
    t = Table(title="dropped rows (by reason)", title_justify="left")
    for col in ("source", "reason", "rows"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for src, reason, n in rows:
        t.add_row(src, reason, f"{n:,}")
    return t


def dedup_table(dedup: dict) -> Table | None:
    if not dedup:
        return None
    policy = dedup.get("policy", {})
    t = Table(title=f"duplicates (report: {dedup.get('report', '-')})", title_justify="left")
    for col in ("kind", "policy", "pairs", "dropped", "x-source", "x-split", "conflicts"):  # fits 80 columns
        t.add_column(col, justify="left" if col in ("kind", "policy") else "right", overflow="fold")
    for kind in ("exact", "near"):
        d = dedup.get(kind, {})
        mode = policy.get(kind, "?") + (f" (≤{policy.get('near_threshold')} bits)" if kind == "near" else "")
        t.add_row(kind, mode, *(f"{d.get(k, 0):,}" for k in
                                ("pairs", "dropped", "cross_source", "cross_split", "label_conflicts")))  # fmt: skip
    return t


def print_summary(summary: dict, counts: dict | None = None) -> None:
    """Counts by source x split x class, drops and duplicates of a build summary."""
    for table in counts_tables(counts if counts is not None else summary.get("counts", {})):
        console.print(table)
    for table in (drops_table(summary.get("drops", {})), dedup_table(summary.get("dedup", {}))):
        if table is not None:
            console.print(table)
