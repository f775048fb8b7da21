"""Cross-fitting: `--fold K --folds N` teachers and `export-softlabels --out-of-fold`, on real FER2013
rows (the folds) and tiny real training runs (the export a student learns from)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fertrain.ensemble import load_teacher
from fertrain.ensemble.provenance import trained_faces
from fertrain.ensemble.teacher import Teacher
from fertrain.errors import ConfigError
from fertrain.manifests import load_manifest
from fertrain.manifests.io import write_stamp
from fertrain.manifests.splits import training_folds
from fertrain.runs.report_paths import HELDOUT_ROWS
from fertrain.runs.status import read_status
from fertrain.softlabels import export_out_of_fold, export_softlabels, load_softlabels
from fertrain.softlabels.io import PROB_COLUMNS, parts_dir
from fertrain.student import resolve_student_config, train_student
from fertrain.teacher import resolve_teacher_config, train_teacher
from tests.clitools import run_cli

TINY = {"backbone": "resnet10t", "head": "linear", "img_size": 32, "batch_size": 32, "workers": 0, "device": "cpu",
        "epochs": 1, "lr": 2e-3, "skip_onnx": True}  # fmt: skip
FOLDS = 3


def test_training_folds_are_stratified_and_keep_each_image_in_one_fold(fer2013_manifest):
    train = load_manifest(fer2013_manifest).df.query("split == 'train'").reset_index(drop=True)
    labels, images = train["label"].to_numpy(), train["sha256"].to_numpy()
    fold = training_folds(labels, images, 5)
    assert np.array_equal(fold, training_folds(labels, images, 5))  # the same folds for every teacher
    sizes = np.bincount(fold, minlength=5)
    assert sizes.sum() == len(train) and sizes.max() - sizes.min() <= 0.01 * len(train)
    for c in np.unique(labels):  # every class split evenly: each fold within 2 % of a fifth of it
        per_fold = np.bincount(fold[labels == c], minlength=5)
        assert np.abs(per_fold - per_fold.mean()).max() <= max(2, 0.02 * per_fold.sum()), c
    repeated = train[train.duplicated("sha256", keep=False)]
    assert len(repeated) > 0  # FER2013's training split repeats images: they must not straddle folds
    folds_per_image = pd.Series(fold[repeated.index]).groupby(repeated["sha256"].to_numpy()).nunique()
    assert (folds_per_image == 1).all()


def test_a_fold_out_of_range_is_refused_naming_the_flag(lowres_manifest, tmp_path):
    with pytest.raises(ConfigError, match=r"--fold 3: folds are numbered 0..2 \(--folds 3\)"):
        resolve_teacher_config({**TINY, "manifest": str(lowres_manifest), "fold": 3, "folds": 3})
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        resolve_teacher_config({**TINY, "manifest": str(lowres_manifest), "fold": 0, "folds": 1})


def _assert_each_row_labelled_by_the_run_that_held_it_out(table: pd.DataFrame, runs: list[Path], manifest: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    """Run K's held-out rows carry fold K and the probabilities run K gives them when it labels every row."""
    table = table.set_index("row_id")
    for k, run in enumerate(runs):
        held = json.loads((run / HELDOUT_ROWS).read_text())["row_ids"]
        assert (table.loc[held, "fold"] == k).all()
        whole = export_softlabels(run, manifest, tmp_path / f"all{k}.parquet", device="cpu", workers=0,
                                  show_progress=False)  # fmt: skip
        every_row = pd.read_parquet(whole["path"]).set_index("row_id").loc[held]
        np.testing.assert_allclose(table.loc[held, list(PROB_COLUMNS)].to_numpy(),
                                   every_row[list(PROB_COLUMNS)].to_numpy(), atol=1e-6)  # fmt: skip


@pytest.fixture(scope="module")
def fold_teachers(lowres_manifest, tmp_path_factory) -> list[Path]:
    """Three one-epoch teachers, teacher K without fold K of three."""
    out = tmp_path_factory.mktemp("folds")
    runs = [out / f"fold{k}" for k in range(FOLDS)]
    for k, run in enumerate(runs):
        cfg = resolve_teacher_config({**TINY, "manifest": str(lowres_manifest), "output_dir": str(run), "fold": k,
                                      "folds": FOLDS, "seed": 1337 + k})  # fmt: skip
        assert train_teacher(cfg, show_progress=False).complete
    return runs


def test_each_fold_teacher_holds_out_its_fold_and_never_trains_on_it(lowres_manifest, fold_teachers):
    manifest = load_manifest(lowres_manifest)
    train_ids = set(manifest.df.query("split == 'train'")["row_id"].astype(str))
    held = [json.loads((run / HELDOUT_ROWS).read_text()) for run in fold_teachers]
    assert [h["fold"] for h in held] == list(range(FOLDS)) and {h["folds"] for h in held} == {FOLDS}
    held_ids = [set(h["row_ids"]) for h in held]
    assert set().union(*held_ids) == train_ids  # the folds cover the training rows ...
    assert sum(len(ids) for ids in held_ids) == len(train_ids)  # ... once each
    for k, (run, ids) in enumerate(zip(fold_teachers, held_ids, strict=True)):
        trained = next(iter(trained_faces(load_teacher(run)).values()))
        assert len(trained) == len(train_ids) - len(ids)  # what calibration treats as seen by the teacher
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["fold"], config["folds"]) == (k, FOLDS)
        steps = json.loads((run / "history.json").read_text())[-1]["global_step"]
        assert steps == (len(train_ids) - len(ids)) // TINY["batch_size"]  # one epoch of the rows it kept


def test_out_of_fold_soft_labels_come_from_the_teacher_that_never_saw_the_row(lowres_manifest, fold_teachers,
                                                                              tmp_path, monkeypatch):  # fmt: skip
    kw = {"device": "cpu", "workers": 0, "show_progress": False}
    calls: list[Path] = []
    original = Teacher.logits

    def failing_on_the_last_fold(self, *args, **kwargs):
        calls.append(self.path)
        if self.path == fold_teachers[-1]:
            raise RuntimeError("killed")
        return original(self, *args, **kwargs)

    out = tmp_path / "oof.parquet"
    monkeypatch.setattr(Teacher, "logits", failing_on_the_last_fold)
    with pytest.raises(RuntimeError, match="killed"):
        export_out_of_fold(fold_teachers, lowres_manifest, out, **kw)
    assert not out.exists() and len(list(parts_dir(out).glob("fold-*.parquet"))) == FOLDS - 1
    status = read_status(parts_dir(out))  # how it ended, as the chunked export records it (a pipeline reads it)
    assert status["status"] == "failed" and status["error"] == "RuntimeError: killed"
    monkeypatch.setattr(Teacher, "logits", original)
    summary = export_out_of_fold(list(reversed(fold_teachers)), lowres_manifest, out, **kw)  # order does not matter
    assert summary["complete"] and summary["folds"] == FOLDS and not parts_dir(out).exists()

    manifest = load_manifest(lowres_manifest)
    soft = load_softlabels(out, manifest)  # stamp, probabilities and row keys checked against the manifest
    train = manifest.df.query("split == 'train'")
    assert soft.table["row_id"].tolist() == train["row_id"].astype(str).tolist()  # every training row, in order
    assert soft.metadata["out_of_fold"] == {"folds": FOLDS} and len(soft.metadata["members"]) == FOLDS
    _assert_each_row_labelled_by_the_run_that_held_it_out(soft.table, fold_teachers, lowres_manifest, tmp_path)

    student = resolve_student_config({**TINY, "manifest": str(lowres_manifest), "softlabels": str(out), "loss": "kd",
                                      "output_dir": str(tmp_path / "student")})  # fmt: skip
    assert train_student(student, show_progress=False).complete


def test_a_second_round_fold_students_of_out_of_fold_labels_label_their_own_folds(lowres_manifest, fold_teachers,
                                                                                   tmp_path):  # fmt: skip
    """Students trained with --fold K on the first round's labels make the second round's (docs/accuracy.md,
    "A second round of cross-fitting"): the same folds, each row labelled by the student that never saw it."""
    kw = {"device": "cpu", "workers": 0, "show_progress": False}
    first = Path(export_out_of_fold(fold_teachers, lowres_manifest, tmp_path / "oof.parquet", **kw)["path"])
    manifest = load_manifest(lowres_manifest)
    train_rows = len(manifest.df.query("split == 'train'"))
    students = [tmp_path / f"student{k}" for k in range(FOLDS)]
    for k, run in enumerate(students):
        cfg = resolve_student_config({**TINY, "manifest": str(lowres_manifest), "softlabels": str(first), "loss": "kd",
                                      "fold": k, "folds": FOLDS, "output_dir": str(run)})  # fmt: skip
        assert train_student(cfg, show_progress=False).complete
        held = json.loads((run / HELDOUT_ROWS).read_text())
        assert held["row_ids"] == json.loads((fold_teachers[k] / HELDOUT_ROWS).read_text())["row_ids"]
        steps = json.loads((run / "history.json").read_text())[-1]["global_step"]
        assert steps == (train_rows - len(held["row_ids"])) // TINY["batch_size"]  # its own fold left out
    second = export_out_of_fold(students, lowres_manifest, tmp_path / "oof2.parquet", **kw)
    assert second["complete"] and second["folds"] == FOLDS
    soft = load_softlabels(second["path"], manifest)
    assert [m["members"][0]["run"] for m in soft.metadata["members"]] == [str(run) for run in students]
    table = soft.table.set_index("row_id")
    first_table = load_softlabels(first).table.set_index("row_id").loc[table.index]
    assert (table["fold"] == first_table["fold"]).all()
    _assert_each_row_labelled_by_the_run_that_held_it_out(soft.table, students, lowres_manifest, tmp_path)
    assert not np.allclose(table[list(PROB_COLUMNS)].to_numpy(), first_table[list(PROB_COLUMNS)].to_numpy(), atol=1e-3)


def test_out_of_fold_export_refuses_folds_that_do_not_cover_the_training_rows(lowres_manifest, fold_teachers,
                                                                             tmp_path, capsys,
                                                                             monkeypatch):  # fmt: skip
    plain = tmp_path / "plain"
    assert train_teacher(resolve_teacher_config({**TINY, "manifest": str(lowres_manifest), "output_dir": str(plain)}),
                         show_progress=False).complete  # fmt: skip
    base = ["export-softlabels", "--manifest", lowres_manifest, "--out", tmp_path / "x.parquet", "--device", "cpu",
            "-j", "0", "-q"]  # fmt: skip
    teachers = [a for run in fold_teachers for a in ("--teacher", run)]
    # the last fold's teacher, copied: once with another manifest's rows, once with its list cut short
    other, broken = tmp_path / "other_manifest", tmp_path / "broken"
    for copy, edit in ((other, lambda held: {**held, "manifest_sha256": "0" * 64}),
                       (broken, lambda held: {k: v for k, v in held.items() if k != "row_ids"})):  # fmt: skip
        shutil.copytree(fold_teachers[-1], copy)
        (copy / HELDOUT_ROWS).write_text(json.dumps(edit(json.loads((copy / HELDOUT_ROWS).read_text()))))
    for args, expected in (
        (teachers[:-2], "no run holds out fold(s) 2 of 3"),
        ([*teachers, "--teacher", fold_teachers[0]], "fold 0 is held out by 2 runs"),
        ([*teachers[:-2], "--teacher", plain], f"--teacher {plain}: trained on all its training rows"),
        ([*teachers[:-2], "--teacher", other], f"--teacher {other} held out rows of manifest sha256 000000000000"),
        ([*teachers[:-2], "--teacher", broken], f"{broken / HELDOUT_ROWS}"),
    ):
        code, text = run_cli([*base, "--out-of-fold", *args], capsys)
        assert code != 0 and expected in " ".join(text.split()), text
    code, text = run_cli([*base, *teachers], capsys)
    assert code == 2 and "--out-of-fold" in text
    assert not (tmp_path / "x.parquet").exists()
    # under torchrun each rank would run the whole export and the second find the first's lock: refused at once
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, text = run_cli([*base, "--out-of-fold", *teachers], capsys)
    expected = "--out-of-fold runs as one process; start it without torchrun (this is rank 1 of 2)"
    assert code == 2 and expected in " ".join(text.split()), text
    assert not (tmp_path / "x.parquet.parts").exists()


def test_label_targets_replace_the_hard_labels_in_the_labels_term(lowres_manifest, fold_teachers, tmp_path):
    kw = {"device": "cpu", "workers": 0, "show_progress": False}
    oof = Path(export_out_of_fold(fold_teachers, lowres_manifest, tmp_path / "oof.parquet", **kw)["path"])
    # the same file with each row's hard label as its target: must train exactly as the hard labels do
    table = pq.read_table(oof)
    frame = table.to_pandas()
    frame[list(PROB_COLUMNS)] = np.eye(len(PROB_COLUMNS), dtype=np.float32)[frame["label"].to_numpy()]
    one_hot = tmp_path / "one_hot.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   one_hot)  # fmt: skip
    write_stamp(one_hot)

    def task_losses(name: str, **over) -> list[float]:
        cfg = resolve_student_config({**TINY, "manifest": str(lowres_manifest), "loss": "ce", "epochs": 2,
                                      "output_dir": str(tmp_path / name), **over})  # fmt: skip
        assert train_student(cfg, show_progress=False).complete
        return [r["train_task_loss"] for r in json.loads((tmp_path / name / "history.json").read_text())]

    hard = task_losses("hard")
    assert task_losses("one_hot", label_targets=str(one_hot)) == pytest.approx(hard, rel=1e-3)  # float drift only
    mixed = task_losses("hard_mixup", mixup=1.0)  # mixed faces: the targets mix with the partner's, as labels do
    assert mixed != pytest.approx(hard, rel=1e-3)
    assert task_losses("one_hot_mixup", label_targets=str(one_hot), mixup=1.0) == pytest.approx(mixed, rel=1e-3)
    soft = task_losses("oof", label_targets=str(oof))
    assert soft[0] != pytest.approx(hard[0], rel=1e-2)  # the teachers' doubts change what the student is taught
    with pytest.raises(ConfigError, match="--label-targets replaces the hard labels .* --loss dkd"):
        resolve_student_config({**TINY, "manifest": str(lowres_manifest), "loss": "dkd", "label_targets": str(oof),
                                "softlabels": str(oof)})  # fmt: skip
