"""Label cleaning: a new manifest without (or with corrected) training labels that out-of-fold
teachers contradict.

FER2013's crowd labels are noisy: on about a tenth of its training faces, a teacher that never saw
the face gives the recorded label under 0.1. Confident-learning style cleaning drops such rows
(`drop_below`) or moves them to the class the teachers are sure of (`relabel_above`). The
probabilities must be out of fold (`fertrain export-softlabels --out-of-fold`): a teacher that
trained on a face has learnt its label and finds almost no issues there.

The source manifest is never modified. The result is a new SHA-stamped manifest with the same
row ids (so runs, soft labels and reports stay comparable), a summary naming what it was derived
from, and a CSV listing every changed row with the probabilities that decided it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fertrain.atomic import atomic_path, atomic_write_json
from fertrain.errors import ConfigError, InputError
from fertrain.labels import CLASS_NAMES, SOFT_COLUMNS
from fertrain.manifests import load_manifest, summary_path
from fertrain.manifests.build import BuildResult, store_root, summary_facts, write_checked
from fertrain.manifests.io import normalize_dtypes
from fertrain.softlabels.io import load_softlabels


def label_issues_path(manifest: str | Path) -> Path:
    """`<manifest>.label_issues.csv`: every row the cleaning dropped or relabelled."""
    return Path(f"{manifest}.label_issues.csv")


@dataclass(frozen=True)
class CleaningPolicy:
    drop_below: float = 0.0  # drop a row whose own label gets a probability under this
    relabel_above: float | None = None  # a row whose top class (not its label) reaches this takes that class
    split: str = "train"  # only these rows change; evaluation splits are never cleaned

    def check(self) -> None:
        if not 0 <= self.drop_below < 1:
            raise ConfigError(f"--drop-below {self.drop_below:g}: expected a probability in [0, 1)")
        if self.relabel_above is not None and not 0 < self.relabel_above <= 1:
            raise ConfigError(f"--relabel-above {self.relabel_above:g}: expected a probability in (0, 1]")
        if self.relabel_above is not None and self.relabel_above <= self.drop_below:
            raise ConfigError(f"--relabel-above {self.relabel_above:g} must be above --drop-below "
                              f"{self.drop_below:g}: a relabelled row would be dropped at once")  # fmt: skip
        if self.drop_below == 0 and self.relabel_above is None:
            raise ConfigError("nothing to clean: give --drop-below P and/or --relabel-above P")


@dataclass(frozen=True)
class LabelIssues:
    """Per row of the cleaned split: the label it keeps (or gets) and whether it is dropped."""

    new_label: np.ndarray
    relabel: np.ndarray
    drop: np.ndarray


def find_label_issues(labels: np.ndarray, probs: np.ndarray, policy: CleaningPolicy) -> LabelIssues:
    """Relabel first (a confident other class), then drop rows whose (new) label stays improbable."""
    rows = np.arange(len(labels))
    top = probs.argmax(1)
    relabel = np.zeros(len(labels), dtype=bool)
    if policy.relabel_above is not None:
        relabel = (top != labels) & (probs[rows, top] >= policy.relabel_above)
    new_label = np.where(relabel, top, labels)
    drop = probs[rows, new_label] < policy.drop_below
    return LabelIssues(new_label, relabel, drop)


def clean_manifest(manifest_path: str | Path, softlabels_path: str | Path, out: str | Path, policy: CleaningPolicy,
                   *, overwrite: bool = False) -> BuildResult:  # fmt: skip
    """Write a cleaned copy of a manifest at `out` (stamp, summary and label-issue list beside it)."""
    policy.check()
    manifest_path, softlabels_path, out = Path(manifest_path), Path(softlabels_path), Path(out)
    if out.resolve() == manifest_path.resolve():
        raise ConfigError(f"--out {out} is the manifest being cleaned; write the cleaned one to a new file")
    started = time.time()
    m = load_manifest(manifest_path)
    df = m.df.reset_index(drop=True)  # positions and index agree below
    sl = load_softlabels(softlabels_path, m)  # refuses another manifest's soft labels or changed row keys
    if not sl.metadata.get("out_of_fold"):
        raise InputError(softlabels_path, "not out-of-fold soft labels: a teacher that trained on a face has learnt "
                                          "its label and finds almost no label issues there; export them with "
                                          "`fertrain export-softlabels --out-of-fold --teacher F0 ... FN`",
                         kind="value")  # fmt: skip
    where = np.flatnonzero((df["split"] == policy.split).to_numpy())
    if len(where) == 0:
        raise ConfigError(f"--split {policy.split}: {manifest_path} has no such rows")
    rows = df.iloc[where]
    p = sl.probs_of(rows, f"every '{policy.split}' row of {manifest_path} needs one to be cleaned").astype(np.float64)
    labels = rows["label"].to_numpy(dtype=np.int64)
    issues = find_label_issues(labels, p, policy)
    if m.has_soft_labels:
        carries = issues.relabel & ~np.isnan(rows[list(SOFT_COLUMNS)].to_numpy(dtype=np.float64)).all(1)
        if carries.any():
            raise ConfigError(f"{manifest_path}: row {rows['row_id'].iloc[int(np.flatnonzero(carries)[0])]} would be "
                              "relabelled but carries its source's own soft labels, which would contradict the new "
                              "label; clean with --drop-below only")  # fmt: skip

    moved = where[issues.relabel]
    df.loc[moved, "label"] = issues.new_label[issues.relabel]
    df.loc[moved, "label_name"] = [CLASS_NAMES[k] for k in issues.new_label[issues.relabel]]
    roots = m.root_dirs()  # resolved against the source manifest's folder, stored against the new one's
    df["root"] = df["root"].map({r: store_root(str(path), out.parent) for r, path in roots.items()})
    df = normalize_dtypes(df.drop(index=where[issues.drop]).reset_index(drop=True))

    out.parent.mkdir(parents=True, exist_ok=True)
    digest = write_checked(df, out, overwrite)
    with atomic_path(label_issues_path(out)) as tmp:
        issue_report(rows["row_id"].to_numpy(), labels, p, issues).to_csv(tmp, index=False, lineterminator="\n")
    summary = {
        **summary_facts(out, digest, df, started),
        "derived_from": {"manifest": str(manifest_path), "sha256": m.sha256},
        "label_cleaning": {
            "softlabels": str(softlabels_path), "softlabels_sha256": sl.sha256,
            "teacher": sl.metadata.get("teacher"), "tta": sl.metadata.get("tta"), "policy": asdict(policy),
            "rows_considered": len(rows), "dropped": int(issues.drop.sum()), "relabelled": int(issues.relabel.sum()),
            **issue_counts(labels, issues), "report": label_issues_path(out).name,
        },
    }  # fmt: skip
    atomic_write_json(summary_path(out), summary)
    return BuildResult(out, digest, summary, df)


def issue_report(row_ids: np.ndarray, labels: np.ndarray, probs: np.ndarray, issues: LabelIssues) -> pd.DataFrame:
    """One line per dropped or relabelled row, with the probabilities that decided it."""
    changed = issues.relabel | issues.drop
    top = probs.argmax(1)
    names = np.array(CLASS_NAMES)
    return pd.DataFrame({
        "row_id": row_ids[changed],
        "action": np.where(issues.drop, "drop", "relabel")[changed],
        "label_name": names[labels[changed]],
        "new_label_name": np.where(issues.drop, "", names[issues.new_label])[changed],
        "p_label": probs[np.arange(len(labels)), labels][changed].round(4),
        "top_name": names[top[changed]],
        "p_top": probs.max(1)[changed].round(4),
    })  # fmt: skip


def issue_counts(labels: np.ndarray, issues: LabelIssues) -> dict:
    """Per class: rows, dropped, relabelled from and to; and the moves (from->to) by frequency."""
    per_class = {name: {"rows": int((labels == k).sum()), "dropped": int((issues.drop & (labels == k)).sum()),
                        "relabelled_from": int((issues.relabel & (labels == k)).sum()),
                        "relabelled_to": int((issues.relabel & (issues.new_label == k)).sum())}
                 for k, name in enumerate(CLASS_NAMES)}  # fmt: skip
    moves = Counter(f"{CLASS_NAMES[a]}->{CLASS_NAMES[b]}"
                    for a, b in zip(labels[issues.relabel], issues.new_label[issues.relabel], strict=True))  # fmt: skip
    return {"per_class": per_class, "moves": dict(moves.most_common())}
