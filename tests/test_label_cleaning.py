"""`fertrain manifest clean`: a new manifest without (or with corrected) the training labels that
out-of-fold probabilities contradict, on the real FER2013 training rows and a tiny real training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fertrain.ensemble import load_teacher
from fertrain.ensemble.provenance import trained_faces
from fertrain.errors import ConfigError, FertrainError, InputError
from fertrain.labels import CLASS_NAMES, SOFT_COLUMNS
from fertrain.manifests import load_manifest, summary_path
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.io import write_manifest_file
from fertrain.softlabels import load_softlabels
from fertrain.softlabels.cleaning import CleaningPolicy, clean_manifest, find_label_issues, label_issues_path
from fertrain.softlabels.export import soft_label_frame, write_softlabel_file
from fertrain.student import resolve_student_config, train_student
from fertrain.teacher import resolve_teacher_config, train_teacher
from tests.clitools import run_cli

TINY = {"backbone": "resnet10t", "head": "linear", "img_size": 32, "batch_size": 32, "workers": 0, "device": "cpu",
        "epochs": 1, "lr": 2e-3, "skip_onnx": True}  # fmt: skip


def write_oof(manifest_path: Path, probs: np.ndarray, out: Path, *, out_of_fold: bool = True) -> Path:
    """A soft-label file over the manifest's training rows with the given probabilities."""
    m = load_manifest(manifest_path)
    train = m.df.query("split == 'train'")
    meta = {"format": "fertrain-softlabels-v1", "manifest": str(manifest_path), "manifest_sha256": m.sha256,
            "splits": ["train"], "rows": len(train), "tta": "none", "teacher": ["test"]}  # fmt: skip
    if out_of_fold:
        meta["out_of_fold"] = {"folds": 5}
    table = pa.Table.from_pandas(soft_label_frame(train, probs, None), preserve_index=False)
    write_softlabel_file(table, meta, out)
    return out


def planted_probs(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities that mostly back the label, with planted issues: (probs, rows whose own label
    gets 0.02, rows whose label gets 0.1 and another class 0.8, that class)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    probs = rng.dirichlet(np.ones(len(CLASS_NAMES)), n) * 0.4
    probs[np.arange(n), labels] += 0.6
    improbable, confused = np.split(rng.choice(n, 2 * (n // 20), replace=False), 2)
    other = (labels[confused] + 1 + rng.integers(0, len(CLASS_NAMES) - 1, len(confused))) % len(CLASS_NAMES)
    probs[improbable] = 0.98 / (len(CLASS_NAMES) - 1)
    probs[improbable, labels[improbable]] = 0.02
    probs[confused] = 0.1 / (len(CLASS_NAMES) - 2)
    probs[confused, labels[confused]] = 0.1
    probs[confused, other] = 0.8
    return probs / probs.sum(1, keepdims=True), improbable, confused, other


def test_find_label_issues_relabels_confident_disagreements_then_drops_improbable_labels():
    labels = np.array([0, 0, 1, 2])
    probs = np.array([[0.90, 0.05, 0.05],   # agrees: kept
                      [0.04, 0.90, 0.06],   # another class at 0.9: relabelled to 1
                      [0.50, 0.03, 0.47],   # own label 0.03, no class at 0.7: dropped
                      [0.35, 0.60, 0.05]])  # own label 0.05 (not under 0.05), top 0.6 (under 0.7): kept
    issues = find_label_issues(labels, probs, CleaningPolicy(drop_below=0.05, relabel_above=0.7))
    assert issues.relabel.tolist() == [False, True, False, False]
    assert issues.new_label.tolist() == [0, 1, 1, 2]
    assert issues.drop.tolist() == [False, False, True, False]
    dropping_only = find_label_issues(labels, probs, CleaningPolicy(drop_below=0.05))
    assert dropping_only.drop.tolist() == [False, True, True, False] and not dropping_only.relabel.any()


@pytest.mark.parametrize(("policy", "message"), [
    (CleaningPolicy(), "nothing to clean: give --drop-below P and/or --relabel-above P"),
    (CleaningPolicy(drop_below=1.0), r"--drop-below 1: expected a probability in \[0, 1\)"),
    (CleaningPolicy(relabel_above=1.5), r"--relabel-above 1.5: expected a probability in \(0, 1\]"),
    (CleaningPolicy(drop_below=0.3, relabel_above=0.2), "--relabel-above 0.2 must be above --drop-below 0.3"),
])  # fmt: skip
def test_a_policy_that_cannot_work_is_refused_naming_the_flag(policy, message):
    with pytest.raises(ConfigError, match=message):
        policy.check()


def test_cleaning_the_real_fer2013_training_rows(fer2013_manifest, tmp_path):
    source = load_manifest(fer2013_manifest)
    source_sha = sha256_file(fer2013_manifest)
    train = source.df.query("split == 'train'").reset_index(drop=True)
    labels = train["label"].to_numpy()
    probs, improbable, confused, other = planted_probs(labels, seed=0)
    oof = write_oof(fer2013_manifest, probs, tmp_path / "oof.parquet")
    shuffled = train.sample(frac=1, random_state=0)  # rows are looked up by row id, in the order asked for
    np.testing.assert_allclose(load_softlabels(oof).probs_of(shuffled, "-"), probs[shuffled.index], rtol=1e-6)
    out = tmp_path / "cleaned" / "m.parquet"  # another folder: the image roots are stored relative to it
    result = clean_manifest(fer2013_manifest, oof, out, CleaningPolicy(drop_below=0.05, relabel_above=0.7))

    assert sha256_file(fer2013_manifest) == source_sha  # the source is never modified
    cleaned = load_manifest(out)  # stamped, loadable
    assert cleaned.sha256 == result.sha256 and cleaned.derived_from() == source.sha256
    kept = cleaned.df.query("split == 'train'").set_index("row_id")
    dropped_ids, relabelled_ids = set(train["row_id"][improbable]), train["row_id"][confused]
    assert len(kept) == len(train) - len(improbable) and not dropped_ids & set(kept.index)
    np.testing.assert_array_equal(kept.loc[relabelled_ids, "label"].to_numpy(), other)
    assert kept.loc[relabelled_ids, "label_name"].tolist() == [CLASS_NAMES[k] for k in other]
    assert (kept.loc[relabelled_ids, "native_label"].to_numpy() == train.set_index("row_id").loc[
        relabelled_ids, "native_label"].to_numpy()).all()  # the source's own label stays on record
    untouched = kept.index.difference(relabelled_ids)
    assert (kept.loc[untouched, "label"] == train.set_index("row_id").loc[untouched, "label"]).all()
    pd.testing.assert_frame_equal(cleaned.df.query("split == 'val'").drop(columns="root").reset_index(drop=True),
                                  source.df.query("split == 'val'").drop(columns="root").reset_index(drop=True))
    sample = cleaned.df.sample(50, random_state=0)
    assert all(p.is_file() for p in cleaned.image_paths(sample))  # roots re-stored against the new folder
    assert [p.resolve() for p in cleaned.image_paths(sample)] == [
        p.resolve() for p in source.image_paths(source.df.set_index("row_id").loc[sample["row_id"]].reset_index())]

    report = pd.read_csv(label_issues_path(out))
    assert len(report) == len(improbable) + len(confused)
    assert set(report.query("action == 'drop'")["row_id"]) == dropped_ids
    moved = report.query("action == 'relabel'").set_index("row_id").loc[relabelled_ids]
    assert moved["new_label_name"].tolist() == [CLASS_NAMES[k] for k in other]
    np.testing.assert_allclose(moved["p_top"], 0.8, atol=1e-3)
    summary = json.loads(summary_path(out).read_text())
    info = summary["label_cleaning"]
    assert summary["derived_from"]["sha256"] == source.sha256 and info["policy"]["relabel_above"] == 0.7
    assert (info["dropped"], info["relabelled"], info["rows_considered"]) == (len(improbable), len(confused),
                                                                               len(train))  # fmt: skip
    assert sum(c["dropped"] for c in info["per_class"].values()) == len(improbable)
    assert summary["totals"]["train"] == len(kept)


def test_cleaning_refuses_what_would_mislead_or_overwrite(lowres_manifest, tmp_path):
    labels = load_manifest(lowres_manifest).df.query("split == 'train'")["label"].to_numpy()
    probs = planted_probs(labels, seed=1)[0]
    policy = CleaningPolicy(drop_below=0.05)
    in_fold = write_oof(lowres_manifest, probs, tmp_path / "in_fold.parquet", out_of_fold=False)
    with pytest.raises(InputError, match=r"in_fold.parquet.*not out-of-fold soft labels.*--out-of-fold"):
        clean_manifest(lowres_manifest, in_fold, tmp_path / "c.parquet", policy)
    oof = write_oof(lowres_manifest, probs, tmp_path / "oof.parquet")
    with pytest.raises(ConfigError, match="is the manifest being cleaned"):
        clean_manifest(lowres_manifest, oof, lowres_manifest, policy, overwrite=True)
    out = tmp_path / "c.parquet"
    clean_manifest(lowres_manifest, oof, out, policy)
    first = sha256_file(out)
    with pytest.raises(ConfigError, match="exists with different content"):
        clean_manifest(lowres_manifest, oof, out, CleaningPolicy(drop_below=0.2))
    assert sha256_file(out) == first  # nothing lost
    clean_manifest(lowres_manifest, oof, out, policy)  # the same result again is not a conflict

    partial = tmp_path / "partial.parquet"  # a file that lacks some training rows
    table = load_softlabels(oof).table.iloc[5:]
    write_softlabel_file(pa.Table.from_pandas(table, preserve_index=False), load_softlabels(oof).metadata, partial)
    with pytest.raises(InputError, match=r"partial.parquet: no soft labels for 5 of .*every 'train' row of .* needs"):
        clean_manifest(lowres_manifest, partial, tmp_path / "p.parquet", policy)

    with_soft = tmp_path / "soft" / "m.parquet"  # rows with their source's own soft labels (FERPlus-like)
    df = load_manifest(lowres_manifest).df.copy()
    df["root"] = [str(p.parent.parent.parent) for p in load_manifest(lowres_manifest).image_paths(df)]
    for k, col in enumerate(SOFT_COLUMNS):
        df[col] = (df["label"] == k).astype("float32")
    with_soft.parent.mkdir()
    write_manifest_file(df, with_soft)
    soft_oof = write_oof(with_soft, probs, tmp_path / "soft_oof.parquet")
    with pytest.raises(ConfigError, match="carries its source's own soft labels"):
        clean_manifest(with_soft, soft_oof, tmp_path / "s.parquet", CleaningPolicy(relabel_above=0.3))


def test_runs_train_on_the_cleaned_rows_and_students_read_the_sources_soft_labels(lowres_manifest, tmp_path,
                                                                                  capsys):  # fmt: skip
    labels = load_manifest(lowres_manifest).df.query("split == 'train'")["label"].to_numpy()
    probs, improbable, confused, _ = planted_probs(labels, seed=2)
    oof = write_oof(lowres_manifest, probs, tmp_path / "oof.parquet")
    cleaned = tmp_path / "cleaned.parquet"
    code, out = run_cli(["manifest", "clean", str(lowres_manifest), "--softlabels", str(oof), "--drop-below", "0.05",
                         "--relabel-above", "0.7", "--out", str(cleaned)], capsys)  # fmt: skip
    assert code == 0, out
    assert f"{len(improbable):,} dropped, {len(confused):,} relabelled" in out and "wrote" in out
    code, out = run_cli(["manifest", "inspect", str(cleaned)], capsys)
    assert code == 0 and f"cleaned from {lowres_manifest}" in out, out

    run = tmp_path / "teacher"
    cfg = resolve_teacher_config({**TINY, "manifest": str(cleaned), "output_dir": str(run)})
    assert train_teacher(cfg, show_progress=False).complete
    kept = len(labels) - len(improbable)
    assert json.loads((run / "history.json").read_text())[-1]["global_step"] == kept // TINY["batch_size"]
    assert len(next(iter(trained_faces(load_teacher(run)).values()))) == kept  # calibration's view of the run

    # offline distillation on the cleaned manifest from the soft labels of the one it was cleaned from
    student = tmp_path / "student"
    scfg = resolve_student_config({**TINY, "manifest": str(cleaned), "output_dir": str(student),
                                   "softlabels": str(oof), "loss": "kd"})  # fmt: skip
    assert train_student(scfg, show_progress=False).complete
    rows = load_softlabels(oof, load_manifest(cleaned)).table  # only the rows the cleaned manifest kept
    assert len(rows) == kept and not set(rows["row_id"]) & set(load_softlabels(oof).table["row_id"].iloc[improbable])


def test_soft_labels_of_an_unrelated_manifest_are_still_refused(lowres_manifest, fer2013_manifest, tmp_path):
    labels = load_manifest(fer2013_manifest).df.query("split == 'train'")["label"].to_numpy()
    oof = write_oof(fer2013_manifest, planted_probs(labels, seed=3)[0], tmp_path / "fer.parquet")
    with pytest.raises(FertrainError, match="soft labels were made for manifest sha256"):
        load_softlabels(oof, load_manifest(lowres_manifest))
    sl = load_softlabels(oof)  # a file that names no manifest is not taken for one cleaned from nothing
    unnamed = tmp_path / "unnamed.parquet"
    write_softlabel_file(pa.Table.from_pandas(sl.table, preserve_index=False),
                         {k: v for k, v in sl.metadata.items() if k != "manifest_sha256"}, unnamed)  # fmt: skip
    with pytest.raises(FertrainError, match="soft labels were made for manifest sha256 None"):
        load_softlabels(unnamed, load_manifest(lowres_manifest))
