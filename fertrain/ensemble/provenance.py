"""Which faces a teacher trained on, read from each member run's alignment report, so that
calibration and weight search can prove they use held-out faces (matched by image sha256 and
face box: FER2013's PublicTest repeats training images under other names)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fertrain.ensemble.teacher import Teacher
from fertrain.errors import FertrainError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.manifests.dedup import face_keys
from fertrain.runs.heldout import read_heldout
from fertrain.runs.reports import ALIGNMENT_REPORT


def training_face_mask(teacher: Teacher, rows: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """(which of `rows` are faces some member trained on, how many per member run), by sha256 + box."""
    keys = face_keys(rows)
    per_run = {run: keys.isin(trained).to_numpy() for run, trained in trained_faces(teacher).items()}
    seen = np.logical_or.reduce(list(per_run.values())) if per_run else np.zeros(len(rows), dtype=bool)
    return seen, {run: int(mask.sum()) for run, mask in per_run.items()}


def alignment_report(run_dir: Path, purpose: str) -> dict:
    """A member run's alignment report (what it trained on); `purpose` says why it is needed."""
    path = run_dir / ALIGNMENT_REPORT
    if not path.is_file():
        raise FertrainError(f"{run_dir}: no {ALIGNMENT_REPORT}; {purpose}")
    return json.loads(path.read_text(encoding="utf-8"))


def trained_faces(teacher: Teacher) -> dict[str, set[str]]:
    """Per member run: the face keys (sha256 + box) of the rows it trained on."""
    found = {}
    for m in teacher.members:
        report = alignment_report(m.run_dir, "cannot prove the calibration rows are held out")
        train_manifest = load_manifest(report["manifest_resolved"])  # stamp checked: same rows as trained on
        policy = report["source_filter"]
        train_split = m.config.get("train_split", "train")
        trained = filter_rows(train_manifest.df, SourceFilter(policy["include_sources"], policy["exclude_sources"],
                                                              [train_split]))  # fmt: skip
        held = read_heldout(m.run_dir)  # a --fold run never saw its fold
        if held is not None:
            trained = trained[~trained["row_id"].astype(str).isin(held.row_ids)]
        found[str(m.run_dir)] = set(face_keys(trained))
    return found


def default_manifest(teacher: Teacher) -> str:
    return alignment_report(teacher.members[0].run_dir, "give --manifest")["manifest_resolved"]


def trained_manifests(teacher: Teacher) -> dict[str, tuple[str, str]]:
    """Per member run: (manifest path, manifest sha256) it was trained on, from its alignment report."""
    found = {}
    for m in teacher.members:
        report = alignment_report(m.run_dir, "cannot tell which manifest it was trained on")
        found[str(m.run_dir)] = (report["manifest_resolved"], report["manifest_sha256"])
    return found
