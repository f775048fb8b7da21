"""`fertrain export-softlabels`: teacher probabilities over manifest rows, as stamped Parquet.

Rows are processed in chunks; each finished chunk is written atomically to
`<out>.parts/part-NNNNN.parquet`, so a killed export restarts at the first missing chunk
without duplicating rows. The final file concatenates the parts in manifest order, carries
the provenance in its Parquet metadata and gets a `.sha256` stamp.

Under torchrun (`torchrun --nproc-per-node N -m fertrain export-softlabels ...`) rank r labels
chunks r, r+N, r+2N, ... on its own GPU; rank 0 holds the lock, checks the plan and, once every
rank is done, concatenates the parts: the same file as one process writes, and a killed export
resumes at its missing chunks with any number of ranks. A stop signal ends every rank (the chunk in
progress is lost, the finished ones kept); `<out>.parts/run_status.json` says how the export
ended until a complete one removes the folder.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fertrain.atomic import atomic_path, atomic_write_text
from fertrain.console import console, progress_bar
from fertrain.engine.device import resolve_device
from fertrain.engine.distributed import DistContext, rank_device, start_distributed
from fertrain.ensemble import load_teacher
from fertrain.ensemble.provenance import trained_manifests
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.manifests.io import write_stamp
from fertrain.runs import run_lock
from fertrain.runs.signals import RunInterrupted, stop_signals
from fertrain.runs.status import recorded_status
from fertrain.softlabels.io import LOGIT_COLUMNS, METADATA_KEY, PROB_COLUMNS, parts_dir

FORMAT = "fertrain-softlabels-v1"


def soft_label_frame(rows: pd.DataFrame, probs: np.ndarray, logits: np.ndarray | None) -> pd.DataFrame:
    top1 = probs.argmax(1)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(1)
    df = pd.DataFrame({"row_id": rows["row_id"].astype(str).to_numpy(), "sha256": rows["sha256"].astype(str).to_numpy(),
                       "label": rows["label"].to_numpy(np.int64)})  # fmt: skip
    for i, col in enumerate(PROB_COLUMNS):
        df[col] = probs[:, i].astype(np.float32)
    if logits is not None:
        for i, col in enumerate(LOGIT_COLUMNS):
            df[col] = logits[:, i].astype(np.float32)
    df["top1"] = top1.astype(np.int64)
    df["entropy"] = entropy.astype(np.float32)
    df["agrees"] = top1 == df["label"].to_numpy()
    return df


def export_softlabels(teacher_path: str | Path, manifest_path: str | Path, out: str | Path, *,
                      splits: list[str] | None = None, tta: str = "none", include_logits: bool = False,
                      chunk_size: int = 8192, device: str = "auto", batch_size: int = 256, workers: int = 4,
                      show_progress: bool = True, max_chunks: int | None = None, recover_stale: bool = False,
                      allow_other_manifest: bool = False) -> dict:  # fmt: skip
    """Export; returns a summary. `max_chunks` stops early (used to test resuming).

    The rows are those of `manifest_path`, which must be the manifest the teacher was trained
    on (a student of that manifest looks its soft labels up by row), unless
    `allow_other_manifest` (e.g. labelling a new dataset); that choice is recorded."""
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out {out}: soft labels are written as .parquet")
    teacher = load_teacher(teacher_path, tta)  # the temperature fitted on these views' logits, where there is one
    manifest = load_manifest(manifest_path)
    others = {run: made for run, made in trained_manifests(teacher).items() if made[1] != manifest.sha256}
    if others and not allow_other_manifest:
        run, (path, sha) = next(iter(others.items()))
        raise ConfigError(f"--manifest {manifest_path} (sha256 {str(manifest.sha256)[:12]}…) is not the manifest "
                          f"{run} was trained on ({path}, sha256 {sha[:12]}…): its soft labels would not match a "
                          "student trained on that manifest. Pass --allow-other-manifest to label these rows "
                          "anyway (recorded in the file)")  # fmt: skip
    rows = filter_rows(manifest.df, SourceFilter(splits=list(splits or ["train"]))).reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest_path}: no rows in split(s) {splits}")
    parts = parts_dir(out)
    meta = {
        "format": FORMAT, "manifest": str(manifest_path), "manifest_sha256": manifest.sha256,
        "splits": list(splits or ["train"]), "rows": len(rows), "tta": None if tta == "none" else tta,
        "chunk_size": chunk_size, "class_names": [c.split("_", 1)[1] for c in PROB_COLUMNS],
        "other_manifest": bool(others),
        "probabilities": "calibrated: each member's T, weighted fusion, then the teacher's T",
        **teacher.describe(),
    }  # fmt: skip
    configured = resolve_device(device)
    dist = start_distributed(configured)  # under torchrun: each rank on its own GPU
    try:
        return _export_chunks(teacher, manifest, rows, parts, out, meta, dist, chunk_size=chunk_size,
                              device=rank_device(configured, dist), batch_size=batch_size, workers=workers,
                              tta=tta, include_logits=include_logits, show_progress=show_progress,
                              max_chunks=max_chunks, recover_stale=recover_stale,
                              command=f"export-softlabels {teacher_path} -> {out}")  # fmt: skip
    finally:
        dist.shutdown()


def _export_chunks(teacher, manifest, rows: pd.DataFrame, parts: Path, out: Path, meta: dict, dist: DistContext, *,
                   chunk_size: int, device, batch_size: int, workers: int, tta: str, include_logits: bool,
                   show_progress: bool, max_chunks: int | None, recover_stale: bool, command: str) -> dict:  # fmt: skip
    """This rank's share of the chunks; rank 0 then writes the file."""
    n_chunks = (len(rows) + chunk_size - 1) // chunk_size
    with contextlib.ExitStack() as held:
        held.enter_context(stop_signals())  # every rank: a signal torchrun forwards ends each one cleanly
        failure: FertrainError | None = None
        if dist.is_main:
            try:
                lock = held.enter_context(run_lock(parts, recover_stale=recover_stale, command=command))
                # read by a pipeline whose stage torchrun ran: it exits 1 however its ranks ended
                held.enter_context(recorded_status(parts, command=command, started=lock["started"]))
                check_plan(parts / "plan.json", meta)
            except FertrainError as exc:
                failure = exc
        message = dist.broadcast(None if failure is None else str(failure))  # no rank starts unless rank 0 may
        if failure is not None:
            raise failure
        if message is not None:
            raise FertrainError(f"rank 0 stopped the export: {message}")
        mine = range(dist.rank, n_chunks, dist.world_size)
        members = len(teacher.members)
        done, stopped = 0, False
        total = sum(min(chunk_size, len(rows) - c * chunk_size) for c in mine) * members
        with progress_bar("soft labels", total=total, unit="img", show=show_progress and dist.is_main) as advance, \
                _saying_what_was_saved(parts, n_chunks):
            for c in mine:
                part = parts / f"part-{c:05d}.parquet"
                chunk = rows.iloc[c * chunk_size : (c + 1) * chunk_size]
                if part.is_file():  # done by an earlier, interrupted export
                    advance(len(chunk) * members)
                    continue
                if max_chunks is not None and done >= max_chunks:
                    stopped = True
                    break
                logits, _ = teacher.logits(manifest, chunk, device=device, batch_size=batch_size, workers=workers,
                                           tta=tta, on_batch=advance)  # fmt: skip
                frame = soft_label_frame(chunk, teacher.calibrated_probs(logits), logits if include_logits else None)
                with atomic_path(part) as tmp:
                    frame.to_parquet(tmp, index=False)
                done += 1
        if any(dist.gather(stopped)):  # every rank's parts are written once this returns
            return {"complete": False, "chunks_done": len(list(parts.glob("part-*.parquet"))), "chunks": n_chunks}
        if not dist.is_main:
            return {"complete": True, "rank": dist.rank}
        table = pa.concat_tables([pq.read_table(parts / f"part-{c:05d}.parquet") for c in range(n_chunks)])
        if table.num_rows != len(rows) or table.column("row_id").to_pylist() != rows["row_id"].astype(str).tolist():
            raise FertrainError(f"{parts}: the parts do not add up to the {len(rows)} manifest rows in order")
        table, digest = write_softlabel_file(table, meta, out)
    shutil.rmtree(parts)
    return summarize_export(out, table, digest)


@contextlib.contextmanager
def _saying_what_was_saved(parts: Path, n_chunks: int) -> Iterator[None]:
    try:
        yield
    except RunInterrupted as exc:
        saved = len(list(parts.glob("part-*.parquet")))
        raise RunInterrupted(exc.signame, f"{saved} of {n_chunks} chunks saved in {parts}") from None


def write_softlabel_file(table: pa.Table, meta: dict, out: Path) -> tuple[pa.Table, str]:
    """The finished table with its provenance in the Parquet metadata, written atomically and
    stamped; returns the table as written and its sha256."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           METADATA_KEY: json.dumps(meta, default=str).encode()})  # fmt: skip
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return table, write_stamp(out)


def check_plan(plan: Path, meta: dict) -> None:
    """A partial export continues only with the settings it was started with."""
    if plan.is_file():
        previous = json.loads(plan.read_text(encoding="utf-8"))
        now = json.loads(json.dumps(meta, default=str))  # compare like with like (tuples -> lists)
        keys = ("manifest_sha256", "splits", "rows", "chunk_size", "tta", "members", "temperature", "fusion_t")
        if any(previous.get(k) != now.get(k) for k in keys):
            raise FertrainError(f"{plan.parent} holds a partial export with other settings; delete it or use "
                                "the same teacher, manifest, splits, chunk size and TTA")  # fmt: skip
    else:
        atomic_write_text(plan, json.dumps(meta, indent=2, default=str))


def summarize_export(out: Path, table: pa.Table, digest: str) -> dict:
    probs = table.select(list(PROB_COLUMNS)).to_pandas().to_numpy()
    agrees = float(np.mean(table.column("agrees").to_numpy()))
    console.print(f"[green]wrote[/] {out}: {table.num_rows:,} rows, agreement with hard labels {agrees:.3f}",
                  soft_wrap=True)  # fmt: skip
    return {"complete": True, "path": str(out), "sha256": digest, "rows": table.num_rows, "agreement": agrees,
            "mean_max_prob": float(probs.max(1).mean())}  # fmt: skip
