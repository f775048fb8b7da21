"""Build a manifest from a recipe: adapters -> checks -> image facts -> splits -> filter -> dedup.

Writes the manifest (atomically), `<manifest>.sha256`, `<manifest>.summary.json` and
`<manifest>.dedup.csv`. An existing manifest with different content is only replaced with
`overwrite=True`, because runs that recorded its sha256 could no longer be checked.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fertrain import __version__
from fertrain.atomic import atomic_path, atomic_write_json
from fertrain.errors import ConfigError, InputError
from fertrain.labels import CLASS_NAMES, SOFT_COLUMNS
from fertrain.manifests.adapters import AdapterContext, get_adapter
from fertrain.manifests.containment import RootGuard, climbs_out
from fertrain.manifests.dedup import find_duplicates, summarize_pairs
from fertrain.manifests.filters import filter_rows
from fertrain.manifests.imageprobe import LARGE_SIDE, ImageFacts, parallel_map, probe_image, sha256_file
from fertrain.manifests.io import (
    dedup_report_path,
    manifest_format,
    normalize_dtypes,
    summary_path,
    write_manifest_file,
)
from fertrain.manifests.recipe import Recipe, SourceSpec
from fertrain.manifests.schema import COLUMNS, Candidate
from fertrain.manifests.splits import derive_splits
from fertrain.timestamps import local_timestamp

CACHE_DIRNAME = ".fertrain_cache"


@dataclass
class BuildResult:
    path: Path
    sha256: str
    summary: dict
    df: pd.DataFrame


def check_relative_path(ctx: AdapterContext, cand: Candidate, guard: RootGuard) -> bool:
    """A row's path must stay inside its root: no absolute paths, no `..` escapes, and no
    symbolic link (file or folder) that resolves outside the root."""
    if climbs_out(cand.path):
        ctx.bad(cand.origin[0], f"image path {cand.path!r} escapes the source root {cand.root}",
                cand.origin[1], "path")  # fmt: skip
        return False
    cand.path = posixpath.normpath(cand.path)
    real = guard.escape(cand.root / cand.path)
    if real is not None:
        ctx.bad(cand.root / cand.path, f"resolves to {real}, outside the source root {cand.root} (a symbolic "
                "link?); fertrain reads images only inside their root", cand.origin[1], "path")  # fmt: skip
        return False
    return True


def _drop_duplicate_names(ctx: AdapterContext, cands: list[Candidate]) -> list[Candidate]:
    seen: dict[str, Candidate] = {}
    out = []
    for c in cands:
        rid = c.row_id(ctx.source)
        if rid in seen:
            first = seen[rid].origin
            where = f"{first[0]}:{first[1]}" if first[1] is not None else first[0]
            ctx.bad(c.origin[0], f"duplicate name {c.path!r}{'#' + c.face_id if c.face_id else ''} "
                    f"(first seen at {where})", c.origin[1], "duplicate_name")  # fmt: skip
            continue
        seen[rid] = c
        out.append(c)
    return out


def _source_rows(spec: SourceSpec, ctx: AdapterContext, seed: int, workers: int | None, show: bool) -> list[dict]:
    adapter = get_adapter(spec.adapter)
    cands = adapter.fn(ctx)
    if not cands and not ctx.drops:
        raise InputError(spec.path, f"source {spec.name!r}: no images found there; the {adapter.name} adapter reads "
                                    f"{adapter.doc}", kind="missing")  # fmt: skip
    guards = {root: RootGuard(root) for root in {c.root for c in cands}}
    cands = [c for c in cands if check_relative_path(ctx, c, guards[c.root])]
    cands = _drop_duplicate_names(ctx, cands)
    facts = parallel_map(probe_image, [(c.root / c.path, c.box, c.clip_box) for c in cands], workers=workers,
                         description=f"{spec.name}: hashing", show=show)  # fmt: skip
    kept: list[tuple[Candidate, ImageFacts]] = []
    for cand, fact in zip(cands, facts, strict=True):
        image = cand.root / cand.path
        if isinstance(fact, str):
            where = f" (listed at {cand.origin[0]}:{cand.origin[1]})" if cand.origin[1] is not None else ""
            ctx.bad(image, f"{fact}{where}", None, "image")
            continue
        if not fact.box_fits:
            x, y, w, h = cand.box  # type: ignore[misc]
            ctx.bad(cand.origin[0], f"face box x={x} y={y} w={w} h={h} lies outside the {fact.width}x{fact.height} "
                    f"image {image}", cand.origin[1], "box")  # fmt: skip
            continue
        if fact.clipped:
            ctx.notes["boxes_clipped"] = ctx.notes.get("boxes_clipped", 0) + 1
            cand.box = fact.box
        if max(fact.width, fact.height) > LARGE_SIDE:
            ctx.notes.setdefault("large_images", []).append(f"{image} ({fact.width}x{fact.height})")
        kept.append((cand, fact))
    if spec.split is not None:
        for c, _ in kept:
            c.split = spec.split
    derive = spec.derive_split
    splits, derived = derive_splits(
        [c.split for c, _ in kept], [c.label for c, _ in kept], [c.group for c, _ in kept],
        val_fraction=derive.val, test_fraction=derive.test,
        seed=derive.seed if derive.seed is not None else seed,
    ) if kept else ([], {})  # fmt: skip
    if derived:
        ctx.notes["derived_splits"] = derived
    rows = []
    for (c, f), split in zip(kept, splits, strict=True):
        box = c.box or (None, None, None, None)
        row = {
            "row_id": c.row_id(spec.name), "source": spec.name, "split": split, "label": c.label,
            "label_name": CLASS_NAMES[c.label], "native_label": c.native_label, "root": str(c.root),
            "path": c.path, "width": f.width, "height": f.height, "sha256": f.sha256, "dhash": f.dhash,
            "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3], "landmarks": c.landmarks,
            "group": c.group, "dup_of": None,
        }  # fmt: skip
        if c.soft is not None:
            row.update(zip(SOFT_COLUMNS, c.soft, strict=True))
        rows.append(row)
    return rows


def store_root(root: str, manifest_dir: Path) -> str:
    """Roots are stored relative to the manifest folder when on the same drive."""
    try:
        return Path(os.path.relpath(Path(root).resolve(), manifest_dir.resolve())).as_posix()
    except ValueError:  # different drive on Windows
        return Path(root).resolve().as_posix()


def count_table(df: pd.DataFrame) -> dict:
    """{source: {split: {class: n}}} with every class present (zeros included)."""
    out: dict = {}
    for (source, split), part in df.groupby(["source", "split"], sort=True):
        counts = part["label"].value_counts()
        out.setdefault(source, {})[split] = {name: int(counts.get(i, 0)) for i, name in enumerate(CLASS_NAMES)}
    return out


def build_manifest(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    skip_bad: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    show_progress: bool = True,
) -> BuildResult:
    out = Path(out) if out else recipe.output
    if out is None:
        raise ConfigError("no output path: give --out or set `output:` in the recipe")
    manifest_format(out)
    started = time.time()
    cache_dir = out.parent / CACHE_DIRNAME
    frames, source_info, drops = [], {}, {}
    for spec in recipe.sources:
        ctx = AdapterContext(spec.name, spec.path, dict(spec.options), cache_dir, skip_bad=skip_bad)
        rows = _source_rows(spec, ctx, recipe.seed, workers, show_progress)
        frames.append(pd.DataFrame(rows))
        drops[spec.name] = dict(sorted(ctx.drops.items()))
        source_info[spec.name] = {**spec.to_dict(), "rows": len(rows), "notes": ctx.notes}
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if df is None:
        raise ConfigError(f"{recipe.origin}: no rows from any source (drops: {drops})")
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    soft_present = [c for c in SOFT_COLUMNS if c in df]
    df = df[list(COLUMNS) + soft_present]
    df["root"] = df["root"].map({r: store_root(r, out.parent) for r in df["root"].unique()})
    before = len(df)
    df = filter_rows(df, recipe.filters, split_flag=f"{recipe.origin}: filters.splits").reset_index(drop=True)
    filtered_out = before - len(df)
    priority = {s.name: s.priority for s in recipe.sources}
    pairs, drop_mask = find_duplicates(df, priority, recipe.dedup)
    kept_of = dict(zip(pairs["row_id"], pairs["dup_of"], strict=True)) if len(pairs) else {}
    df["dup_of"] = df["row_id"].map(kept_of)
    dropped = df[drop_mask]
    for (source, kind), n in Counter(zip(dropped["source"], pairs.set_index("row_id").loc[dropped["row_id"], "kind"],
                                         strict=True)).items():  # fmt: skip
        drops[source][f"duplicate_{kind}"] = drops[source].get(f"duplicate_{kind}", 0) + int(n)
    df = normalize_dtypes(df[~drop_mask].reset_index(drop=True))

    digest = write_checked(df, out, overwrite)
    with atomic_path(dedup_report_path(out)) as tmp:
        pairs.to_csv(tmp, index=False, lineterminator="\n")
    summary = {
        **summary_facts(out, digest, df, started),
        "recipe": recipe.to_dict(),
        "sources": source_info,
        "drops": drops,
        "filtered_out": filtered_out,
        "dedup": {"policy": recipe.dedup.to_dict(), **summarize_pairs(pairs),
                  "report": dedup_report_path(out).name},
    }
    atomic_write_json(summary_path(out), summary)
    return BuildResult(out, digest, summary, df)


def summary_facts(out: Path, digest: str, df: pd.DataFrame, started: float) -> dict:
    """What every manifest summary says: the file, its sha256, when and how it was made, the counts."""
    return {"manifest": str(out), "sha256": digest, "rows": len(df), "fertrain_version": __version__,
            "built_at": local_timestamp(), "build_seconds": round(time.time() - started, 2),
            "class_names": list(CLASS_NAMES), "counts": count_table(df),
            "totals": {s: int(n) for s, n in df["split"].value_counts().sort_index().items()}}  # fmt: skip


def write_checked(df: pd.DataFrame, out: Path, overwrite: bool) -> str:
    """Write the manifest; refuse to replace a different existing manifest without `overwrite`."""
    if out.exists() and not overwrite:
        probe = out.with_name(f".{out.name}.candidate{out.suffix}")
        try:
            new_sha = write_manifest_file(df, probe)
        finally:
            for p in (probe, Path(f"{probe}.sha256")):
                if p.exists():
                    p.unlink()
        existing = sha256_file(out)
        if new_sha != existing:
            raise ConfigError(
                f"{out} exists with different content (sha256 {existing[:12]}…, new {new_sha[:12]}…); "
                "pass --overwrite to replace it (runs that recorded the old sha256 will then refuse to resume)"
            )
    return write_manifest_file(df, out)
