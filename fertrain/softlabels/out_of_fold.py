"""`fertrain export-softlabels --out-of-fold`: cross-fitted soft labels for the training rows.

A teacher trained on every training face gives those faces back nearly the labels it memorized,
so its soft labels say little about which labels are doubtful. Cross-fitting trains N teachers,
teacher K with `--fold K --folds N` (one fold of the training rows held out, listed in its
RUN/heldout_rows.json), and labels each training row with the one teacher that never saw it.

The file has the format of a single teacher's export (same manifest stamp, row keys and
calibrated probability columns, plus `fold`), so `fertrain student --softlabels` reads it as any
other. Each fold is written atomically to `<out>.parts/fold-K.parquet`: a killed export resumes at
the first missing fold; `<out>.parts/run_status.json` says how an unfinished export ended, as for the
chunked export. One process: under torchrun it refuses to start.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from fertrain.atomic import atomic_path
from fertrain.console import progress_bar
from fertrain.engine.device import resolve_device
from fertrain.engine.distributed import from_environment
from fertrain.ensemble import load_teacher
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import load_manifest
from fertrain.runs import run_lock
from fertrain.runs.heldout import HeldOutRows, read_heldout
from fertrain.runs.report_paths import HELDOUT_ROWS
from fertrain.runs.status import recorded_status
from fertrain.softlabels.export import FORMAT, check_plan, soft_label_frame, summarize_export, write_softlabel_file
from fertrain.softlabels.io import PROB_COLUMNS, parts_dir


def heldout_of(run: Path, manifest_sha256: str) -> HeldOutRows:
    """A fold teacher's held-out rows, checked against the manifest being labelled."""
    if not run.is_dir():
        raise ConfigError(f"--teacher {run}: --out-of-fold takes the run directories of teachers trained with "
                          "--fold K --folds N, one per fold")  # fmt: skip
    held = read_heldout(run)
    if held is None:
        raise ConfigError(f"--teacher {run}: trained on all its training rows (no {HELDOUT_ROWS}); for --out-of-fold "
                          "train one teacher per fold with --fold K --folds N")  # fmt: skip
    if held.manifest_sha256 != manifest_sha256:
        raise ConfigError(f"--teacher {run} held out rows of manifest sha256 {held.manifest_sha256[:12]}…, not of "
                          f"--manifest (sha256 {manifest_sha256[:12]}…)")  # fmt: skip
    return held


def check_folds(held: list[tuple[Path, HeldOutRows]]) -> int:
    """One teacher per fold 0..N-1 of one N, no row held out twice; returns N."""
    counts = sorted({h.folds for _, h in held})
    if len(counts) > 1:
        raise ConfigError(f"--teacher: the runs were split into different numbers of folds ({counts}); "
                          "train every fold's teacher with the same --folds")  # fmt: skip
    folds = counts[0]
    by_fold: dict[int, list[str]] = {}
    for run, h in held:
        by_fold.setdefault(h.fold, []).append(str(run))
    twice = {k: runs for k, runs in by_fold.items() if len(runs) > 1}
    if twice:
        fold, runs = next(iter(sorted(twice.items())))
        raise ConfigError(f"--teacher: fold {fold} is held out by {len(runs)} runs ({', '.join(runs)}); give one "
                          "teacher per fold")  # fmt: skip
    missing = sorted(set(range(folds)) - set(by_fold))
    if missing:
        raise ConfigError(f"--teacher: no run holds out fold(s) {', '.join(map(str, missing))} of {folds}; every "
                          "training row needs the teacher that never saw it (train --fold K --folds "
                          f"{folds} for each)")  # fmt: skip
    seen: set[str] = set()
    for run, h in held:
        again = seen.intersection(h.row_ids)
        if again:
            raise ConfigError(f"--teacher {run}: row {sorted(again)[0]!r} is also held out by another run; "
                              "the runs were not trained on the same rows (--train-split or source filters)")
        seen.update(h.row_ids)
    return folds


def export_out_of_fold(teacher_paths: list[str | Path], manifest_path: str | Path, out: str | Path, *,
                       tta: str = "none", include_logits: bool = False, device: str = "auto", batch_size: int = 256,
                       workers: int = 4, show_progress: bool = True, recover_stale: bool = False) -> dict:  # fmt: skip
    """Label each held-out row with its fold's teacher; returns the export summary. One process: each teacher
    labels only the fifth of the faces it held out (seconds on a GPU), so there is nothing to share out."""
    ranks = from_environment()
    if ranks.enabled:  # under torchrun every rank would export the same file and find it locked
        raise ConfigError("export-softlabels --out-of-fold runs as one process; start it without torchrun "
                          f"(this is rank {ranks.rank} of {ranks.world_size})")
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out {out}: soft labels are written as .parquet")
    manifest = load_manifest(manifest_path)
    if not teacher_paths:
        raise ConfigError("--out-of-fold needs one --teacher per fold")
    held = sorted(((Path(p), heldout_of(Path(p), manifest.sha256)) for p in teacher_paths), key=lambda rh: rh[1].fold)
    folds = check_folds(held)
    position = pd.Series(range(len(manifest.df)), index=manifest.df["row_id"].astype(str))
    for run, h in held:
        unknown = ~pd.Index(h.row_ids).isin(position.index)
        if unknown.any():
            raise ConfigError(f"--teacher {run}: held-out row {h.row_ids[int(unknown.argmax())]!r} is not in "
                              f"{manifest_path}")  # fmt: skip
    teachers = [load_teacher(run, tta) for run, _ in held]
    rows = sum(len(h.row_ids) for _, h in held)
    meta = {
        "format": FORMAT, "manifest": str(manifest_path), "manifest_sha256": manifest.sha256,
        "splits": sorted({h.split for _, h in held}), "rows": rows, "tta": None if tta == "none" else tta,
        "class_names": [c.split("_", 1)[1] for c in PROB_COLUMNS], "other_manifest": False,
        "probabilities": "calibrated, out of fold: each row by the teacher that held it out, at that teacher's T",
        "teacher": [str(run) for run, _ in held], "out_of_fold": {"folds": folds},
        "members": [{"fold": h.fold, "rows": len(h.row_ids), **t.describe()}
                    for (_, h), t in zip(held, teachers, strict=True)],
    }  # fmt: skip
    parts = parts_dir(out)
    dev = resolve_device(device)

    def part_of(h: HeldOutRows) -> Path:
        return parts / f"fold-{h.fold:03d}.parquet"

    command = f"export-softlabels --out-of-fold -> {out}"
    with run_lock(parts, recover_stale=recover_stale, command=command) as lock, \
            recorded_status(parts, command=command, started=lock["started"]):  # as the chunked export records it
        check_plan(parts / "plan.json", meta)
        with progress_bar("out-of-fold soft labels", total=rows, unit="img", show=show_progress) as advance:
            for (_, h), teacher in zip(held, teachers, strict=True):
                if part_of(h).is_file():  # done by an earlier, interrupted export
                    advance(len(h.row_ids))
                    continue
                fold_rows = manifest.df.iloc[position.loc[h.row_ids].sort_values().to_numpy()]
                logits, _ = teacher.logits(manifest, fold_rows, device=dev, batch_size=batch_size, workers=workers,
                                           tta=tta, on_batch=advance)  # fmt: skip
                frame = soft_label_frame(fold_rows, teacher.calibrated_probs(logits),
                                         logits if include_logits else None)  # fmt: skip
                frame["fold"] = h.fold
                with atomic_path(part_of(h)) as tmp:
                    frame.to_parquet(tmp, index=False)
        frame = pd.concat([pd.read_parquet(part_of(h)) for _, h in held])
        frame = frame.iloc[position.loc[frame["row_id"]].argsort()].reset_index(drop=True)  # manifest order
        if len(frame) != rows:
            raise FertrainError(f"{parts}: the folds hold {len(frame)} rows, expected {rows}")
        table, digest = write_softlabel_file(pa.Table.from_pandas(frame, preserve_index=False), meta, out)
    shutil.rmtree(parts)
    return summarize_export(out, table, digest) | {"folds": folds}
