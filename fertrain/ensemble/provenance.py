"""Which faces a teacher trained on, read from each member run's alignment report, so that
calibration and weight search can prove they use held-out faces (matched by image sha256 and
face box: FER2013's PublicTest repeats training images under other names)."""

from __future__ import annotations

import json

import pandas as pd

from fertrain.ensemble.teacher import Teacher
from fertrain.errors import FertrainError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.manifests.dedup import face_keys
from fertrain.runs.reports import ALIGNMENT_REPORT


def training_overlap(teacher: Teacher, rows: pd.DataFrame) -> dict[str, int]:
    """Per member run: how many of `rows` are faces it trained on (by sha256 + box)."""
    keys = face_keys(rows)
    return {run: int(keys.isin(trained).sum()) for run, trained in trained_faces(teacher).items()}


def trained_faces(teacher: Teacher) -> dict[str, set[str]]:
    """Per member run: the face keys (sha256 + box) of the rows it trained on."""
    found = {}
    for m in teacher.members:
        report_path = m.run_dir / ALIGNMENT_REPORT
        if not report_path.is_file():
            raise FertrainError(f"{m.run_dir}: no {ALIGNMENT_REPORT}; cannot prove the calibration rows are held out")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        train_manifest = load_manifest(report["manifest_resolved"])  # stamp checked: same rows as trained on
        policy = report["source_filter"]
        train_split = m.config.get("train_split", "train")
        trained = filter_rows(train_manifest.df, SourceFilter(policy["include_sources"], policy["exclude_sources"],
                                                              [train_split]))  # fmt: skip
        found[str(m.run_dir)] = set(face_keys(trained))
    return found


def default_manifest(teacher: Teacher) -> str:
    report = json.loads((teacher.members[0].run_dir / ALIGNMENT_REPORT).read_text(encoding="utf-8"))
    return report["manifest_resolved"]


def trained_manifests(teacher: Teacher) -> dict[str, tuple[str, str]]:
    """Per member run: (manifest path, manifest sha256) it was trained on, from its alignment report."""
    found = {}
    for m in teacher.members:
        report_path = m.run_dir / ALIGNMENT_REPORT
        if not report_path.is_file():
            raise FertrainError(f"{m.run_dir}: no {ALIGNMENT_REPORT}; cannot tell which manifest it was trained on")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        found[str(m.run_dir)] = (report["manifest_resolved"], report["manifest_sha256"])
    return found
