"""Crashes, signals, locks, bad input and tampering: one regression test per failure seen in the
reliability trials (each named after what it proves)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fertrain.atomic import atomic_write_json
from fertrain.errors import DiskFullError, FertrainError, InputError, StampMismatchError
from fertrain.manifests import DedupPolicy, build_manifest, load_manifest, recipe_from_cli, verify_manifest
from fertrain.manifests.io import write_stamp
from fertrain.runs import RunLockedError, clean_runs, run_lock
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.runs.lock import GUARD_NAME, LOCK_NAME
from fertrain.runs.signals import RunInterrupted
from fertrain.softlabels import export_softlabels, load_softlabels
from fertrain.softlabels.io import METADATA_KEY, PROB_COLUMNS
from fertrain.teacher import TeacherTrainer

from .clitools import run_cli
from .conftest import write_image

TINY_ARGS = ["--backbone", "resnet10t", "--head", "linear", "--img-size", "32", "-b", "16", "-j", "0",
             "--device", "cpu", "--lr", "0.002", "--skip-onnx", "-q"]  # fmt: skip


def teacher_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["teacher", "--manifest", str(manifest), "--output-dir", str(out), *TINY_ARGS, *extra]


def dead_lock_payload(run: Path) -> None:
    """The payload a killed process leaves: its pid is gone, no process holds the OS lock."""
    atomic_write_json(run / LOCK_NAME, {"pid": 2**22 + 7, "host": os.uname().nodename, "started": "earlier",
                                        "command": "killed"})  # fmt: skip


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the process ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def checkpoint_step(path: Path) -> tuple[int, int] | None:
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
    except FertrainError:  # being replaced right now
        return None
    return ckpt["global_step"], ckpt["step_in_epoch"]


# --- 1. every locked command can recover a stale lock; read-only work checks the lock first ---------


def test_killed_softlabel_export_resumes_with_recover_stale_lock(demo_pipeline, tmp_path, capsys):
    teacher = next((demo_pipeline / "teachers").glob("*stageA*"))
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    out = tmp_path / "sl.parquet"
    args = ["export-softlabels", "--teacher", teacher, "--manifest", manifest, "--split", "train", "--out", out,
            "--chunk-size", "32", "-j", "0", "--device", "cpu", "-q"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "fertrain", *map(str, args)], stderr=subprocess.DEVNULL)
    parts = Path(f"{out}.parts")
    wait_for(lambda: len(list(parts.glob("part-*.parquet"))) >= 2, proc, "two finished chunks")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(parts.glob("part-*.parquet")))
    code, text = run_cli(args, capsys)
    assert code == 2 and "stale lock" in text and "--recover-stale-lock" in text
    code, text = run_cli([*args, "--recover-stale-lock"], capsys)
    assert code == 0, text
    one_shot = tmp_path / "one.parquet"
    export_softlabels(teacher, manifest, one_shot, splits=["train"], workers=0, device="cpu", show_progress=False,
                      chunk_size=32)  # fmt: skip
    a, b = pd.read_parquet(out), pd.read_parquet(one_shot)
    assert done_before >= 2 and a["row_id"].tolist() == b["row_id"].tolist()
    np.testing.assert_allclose(a[list(PROB_COLUMNS)].to_numpy(), b[list(PROB_COLUMNS)].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("command", ["calibrate", "evaluate"])
def test_calibrate_and_evaluate_refuse_a_stale_lock_before_working_and_recover_it(demo_pipeline, command, capsys,
                                                                                   tmp_path):  # fmt: skip
    run = tmp_path / "stageB"  # a copy: the shared demo run keeps its own calibration
    shutil.copytree(next((demo_pipeline / "teachers").glob("*stageB*")), run)
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    args = [command, run, "--manifest", manifest, "--split", "val" if command == "calibrate" else "test",
            "-j", "0", "--device", "cpu"]  # fmt: skip
    report = run / ("calibration.json" if command == "calibrate" else "evaluation_demo_test.json")
    before = report.read_bytes() if report.exists() else None
    dead_lock_payload(run)
    try:
        t0 = time.perf_counter()
        code, text = run_cli(args, capsys)
        assert code == 2 and "stale lock" in text and "--recover-stale-lock" in text
        assert time.perf_counter() - t0 < 5  # refused before evaluating anything
        assert (report.read_bytes() if report.exists() else None) == before
        code, text = run_cli([*args, "--recover-stale-lock"], capsys)
        assert code == 0, text
        assert not (run / LOCK_NAME).exists()
    finally:
        (run / LOCK_NAME).unlink(missing_ok=True)


# --- 2. SIGTERM / SIGHUP: checkpoint, mark interrupted, release the lock; a plain re-run resumes -----


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_signal_stops_at_a_step_checkpoint_and_a_plain_rerun_resumes(lowres_manifest, tmp_path, capsys, signame):
    args = teacher_args(lowres_manifest, tmp_path / "run", "--epochs", "3", "--img-size", "48")
    ref_args = teacher_args(lowres_manifest, tmp_path / "ref", "--epochs", "3", "--img-size", "48")
    code, text = run_cli(ref_args, capsys)
    assert code == 0, text
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fertrain", *args], stderr=subprocess.DEVNULL)
    wait_for(lambda: (out / "history.json").is_file(), proc, "the first epoch")  # inside epoch 2 now
    proc.send_signal(getattr(signal, signame))
    code = proc.wait(timeout=120)
    assert code == 128 + getattr(signal, signame)
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "interrupted" and signame in status["error"]
    assert not (out / LOCK_NAME).exists()
    step = checkpoint_step(out / "checkpoint_last.pt")
    assert step is not None and step[0] >= 1
    code, text = run_cli(args, capsys)  # no --recover-stale-lock needed
    assert code == 0, text
    ref = json.loads((tmp_path / "ref" / "history.json").read_text())
    got = json.loads((out / "history.json").read_text())
    assert [r["global_step"] for r in got] == [r["global_step"] for r in ref]
    assert [r["val_accuracy"] for r in got] == pytest.approx([r["val_accuracy"] for r in ref])
    assert [r["train_loss"] for r in got] == pytest.approx([r["train_loss"] for r in ref], rel=1e-6)


CRASHING_COMMAND = """
import ctypes, sys
from fertrain import cli
from fertrain.runs import run_lock

@cli.app.command("crash-in-native-code")
def crash_in_native_code(out: str) -> None:
    with run_lock(out, command="a run about to die in native code"):
        ctypes.string_at(0)  # a segfault, as a fault in CUDA or a compiled kernel would be

cli.main(sys.argv[1:])
"""


def test_a_run_killed_by_a_fatal_signal_says_where_and_leaves_a_recoverable_lock(tmp_path, capsys):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", CRASHING_COMMAND, "crash-in-native-code", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGSEGV
    # every thread's Python stack, down to the line that crashed, in the log
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert 'line 9 in crash_in_native_code' in proc.stderr and "Current thread" in proc.stderr
    assert (out / LOCK_NAME).is_file()  # nothing ran after the crash: the next command is told, not misled
    with pytest.raises(FertrainError, match="stale lock"):
        with run_lock(out):
            pass
    with run_lock(out, recover_stale=True) as payload:
        assert payload["recovered_from"]["command"] == "a run about to die in native code"


# --- 3. export onnx never writes into a run that is still training -----------------------------------


def test_export_onnx_refuses_a_run_that_is_training(demo_pipeline, capsys):
    run = next((demo_pipeline / "teachers").glob("*stageB*"))
    before = (run / "model.onnx").read_bytes()
    with run_lock(run, command="fertrain teacher (still training)"):
        code, text = run_cli(["export", "onnx", run], capsys)
    assert code == 2 and "locked by a running process" in text and "still training" in text
    assert (run / "model.onnx").read_bytes() == before


# --- 4. nothing is read from outside the dataset root --------------------------------------------------


def fer_tree(root: Path, per_class: int = 2) -> Path:
    seed = 0
    for split, prefix in (("train", "Training"), ("validation", "PublicTest")):
        for cls in ("angry", "happy"):
            for _ in range(per_class):
                seed += 1
                write_image(root / split / cls / f"{prefix}_{seed}.jpg", seed + 5000)
    return root


def build(root: Path, out: Path, skip_bad: bool = False, source: str = "fer2013"):
    return build_manifest(recipe_from_cli([f"{source}={root}"], [], DedupPolicy("off", "off"), 1), out,
                          skip_bad=skip_bad, show_progress=False)  # fmt: skip


def test_symlinks_out_of_the_root_are_refused_at_build_verify_and_load(tmp_path):
    outside = write_image(tmp_path / "secret" / "elsewhere.jpg", 99)
    root = fer_tree(tmp_path / "fer")
    link = root / "train" / "happy" / "Training_999.jpg"
    link.symlink_to(outside)
    with pytest.raises(InputError, match="outside the source root"):
        build(root, tmp_path / "m.parquet")
    res = build(root, tmp_path / "m.parquet", skip_bad=True)
    assert res.summary["drops"]["fer2013"]["bad_path"] == 1 and not res.df["path"].str.contains("999").any()
    # a class folder that is a link to another tree
    link.unlink()
    (tmp_path / "other" / "surprise").mkdir(parents=True)
    write_image(tmp_path / "other" / "surprise" / "Training_1.jpg", 7)
    (root / "train" / "surprise").symlink_to(tmp_path / "other" / "surprise", target_is_directory=True)
    with pytest.raises(InputError, match="outside the source root"):
        build(root, tmp_path / "m2.parquet")
    # a built manifest whose image is later swapped for a link: verify reports it, loading refuses it
    (root / "train" / "surprise").unlink()
    good = build(root, tmp_path / "m3.parquet")
    victim = root / good.df["path"].iloc[0]
    victim.unlink()
    victim.symlink_to(outside)
    report = verify_manifest(tmp_path / "m3.parquet", show_progress=False)
    assert not report.ok and report.outside_root[0][1] == str(outside)
    from fertrain.data import ManifestFaces, PreprocessSpec

    m = load_manifest(tmp_path / "m3.parquet")
    with pytest.raises(InputError, match="outside its root"):
        ManifestFaces(m, m.df, PreprocessSpec(32))


def test_a_restamped_manifest_cannot_climb_out_of_its_root_or_carry_label_9(tmp_path):
    root = fer_tree(tmp_path / "fer")
    path = tmp_path / "m.csv"
    build(root, path)
    df = pd.read_csv(path)
    for column, value, message in (("path", "../../../etc/hostname", "image path leaves its root"),
                                   ("label", 9, "label is not a class index 0..6")):  # fmt: skip
        edited = df.copy()
        edited.loc[1, column] = value
        edited.to_csv(path, index=False)
        write_stamp(path)  # restamped: the stamp alone does not protect against this
        with pytest.raises(InputError, match=message) as exc:
            load_manifest(path)
        assert str(path) in str(exc.value) and "row 2" in str(exc.value)


# --- 5. runs clean deletes only runs, never a held one ----------------------------------------------


def test_runs_clean_deletes_only_recognisable_unlocked_runs(tmp_path, capsys):
    root = tmp_path / "outputs"
    data = root / "datasets"
    write_image(data / "a.png", 1)
    code, text = run_cli(["runs", "clean", "--root", root, data], capsys)
    assert code == 2 and "not a run directory" in text and (data / "a.png").exists()
    held = root / "held"
    (held / "config.yaml").parent.mkdir(parents=True)
    (held / "config.yaml").write_text("epochs: 1\n")
    from filelock import FileLock

    guard = FileLock(held / GUARD_NAME)
    ready, release = threading.Event(), threading.Event()

    def hold():  # a process that holds the OS lock but has not written its payload yet
        with guard:
            ready.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        ready.wait(10)
        with pytest.raises(FertrainError, match="holds its"):
            clean_runs([held], root)
    finally:
        release.set()
        thread.join()
    assert clean_runs([held], root) == [held.resolve()] and not held.exists()


# --- 6. one-line errors instead of tracebacks ------------------------------------------------------------


BAD_TEACHER_VALUES = [
    ("--lr", "-0.001", "--lr must be > 0"), ("--lr", "nan", "--lr: expected a finite number"),
    ("--lr", "inf", "finite"), ("--lr", "0", "--lr must be > 0"), ("-j", "-1", "--workers must be >= 0"),
    ("--device", "tpu", "--device 'tpu'"), ("--smoothing", "2.5", "--smoothing must be >= 0 and < 1"),
    ("--checkpoint-every-steps", "-2", "--checkpoint-every-steps must be >= 0"),
    ("--epochs", "0", "--epochs must be >= 1"),
    ("--min-lr", "-1", "--min-lr must be >= 0"), ("--weight-decay", "-0.1", "--weight-decay must be >= 0"),
    ("--momentum", "1.5", "--momentum must be >= 0 and < 1"), ("--arcface-s", "0", "--arcface-s must be > 0"),
    ("--arcface-m", "-0.1", "--arcface-m must be >= 0"), ("--model-ema-decay", "1", "--model-ema-decay must be"),
    ("--batch-size", "0", "--batch-size must be >= 1"), ("--img-size", "4", "--img-size must be >= 8"),
    ("--clip-grad", "0", "--clip-grad must be > 0"), ("--lr-warmup-epochs", "-1", "--lr-warmup-epochs must be >= 0"),
    ("--opt", "fastest", "--opt 'fastest'"), ("--select-metric", "loss", "--select-metric 'loss'"),
    ("--class-weights", "heavy", "--class-weights 'heavy'"), ("--log", "wandb", "--log 'wandb'"),
]  # fmt: skip


@pytest.mark.parametrize("flag, value, message", BAD_TEACHER_VALUES)
def test_each_bad_numeric_or_choice_value_is_one_line_naming_the_flag(lowres_manifest, tmp_path, capsys, flag, value,
                                                                      message):  # fmt: skip
    out = tmp_path / "never"
    code, text = run_cli(teacher_args(lowres_manifest, out, flag, value), capsys)
    assert code == 2 and message in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, message", [
    ("epochs: two\n", "epochs: expected a whole number"), ("lr: fast\n", "lr: expected a number"),
    ("seed: abc\n", "seed: expected a whole number"), ("epochs: 1.7\n", "epochs: expected a whole number"),
    ("augment: {bogus: 1}\n", "augment: unknown key"), ("augment: {scale: big}\n", "augment.scale: expected"),
    ("epochs: [1, 2\n", "not valid YAML"),
])  # fmt: skip
def test_bad_yaml_values_are_one_line_naming_file_and_key(lowres_manifest, tmp_path, capsys, yaml_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "never"
    code, text = run_cli(teacher_args(lowres_manifest, out, "--config", str(cfg)), capsys)
    assert code == 2 and message in text and "bad.yaml" in text and len(text.strip().splitlines()) == 1, text
    assert not out.exists()


def test_student_bad_values_are_refused_before_training(demo_pipeline, tmp_path, capsys):
    base = ["student", "-m", demo_pipeline / "manifests" / "demo.parquet", "--softlabels",
            demo_pipeline / "softlabels" / "train.parquet", "--device", "cpu", "-j", "0", "--output-dir",
            tmp_path / "s", "-q"]  # fmt: skip
    for extra, message in ((["--lr", "-1"], "--lr must be > 0"), (["-T", "0"], "--loss-opt temperature must be > 0"),
                           (["--loss-opt", "beta"], "expected KEY=VALUE")):  # fmt: skip
        code, text = run_cli([*base, *extra], capsys)
        assert code == 2 and message in text and "Traceback" not in text, text
        assert not (tmp_path / "s").exists()


def test_failed_starts_leave_no_run_directory(lowres_manifest, tmp_path, capsys):
    cases = (
        (["--backbone", "resnet_nonexistent"], "resnet_nonexistent"),
        (["--manifest", str(tmp_path / "missing.parquet")], "missing.parquet"),
    )
    for extra, message in cases:
        out = tmp_path / "never"
        code, text = run_cli([*teacher_args(lowres_manifest, out), *extra], capsys)
        assert code == 2 and message in text, text
        assert not out.exists(), extra


def test_lock_files_that_are_not_files_are_one_line_errors(tmp_path):
    run = tmp_path / "run"
    (run / LOCK_NAME).mkdir(parents=True)
    with pytest.raises(FertrainError, match="not a file"):
        with run_lock(run):
            pass
    (run / LOCK_NAME).rmdir()
    (tmp_path / "target").write_text("")
    (run / GUARD_NAME).symlink_to(tmp_path / "target")
    with pytest.raises(FertrainError, match="symbolic link"):
        with run_lock(run):
            pass


def test_the_loser_of_a_simultaneous_start_is_told_who_holds_the_lock(tmp_path):
    from filelock import FileLock

    run = tmp_path / "run"
    run.mkdir()
    guard = FileLock(run / GUARD_NAME)
    guard.acquire()

    def write_payload_late():  # the winner took the OS lock but writes its payload a moment later
        time.sleep(0.3)
        atomic_write_json(run / LOCK_NAME, {"pid": os.getpid(), "host": "here", "started": "now",
                                            "command": "the winner"})  # fmt: skip

    threading.Thread(target=write_payload_late).start()
    try:
        with pytest.raises(RunLockedError, match="the winner"):
            with run_lock(run):
                pass
    finally:
        guard.release()


def fail_big_fsyncs(monkeypatch, above: int = 4096):
    """A disk that fills up: syncing a file larger than `above` bytes fails with ENOSPC (the partial
    file is then removed, so the small status file written after it still fits)."""
    import fertrain.atomic

    real = os.fsync

    def fsync(fd):
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_size > above:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(fertrain.atomic.os, "fsync", fsync)


def test_disk_full_is_a_one_line_error_and_the_run_is_marked_failed(lowres_manifest, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    fail_big_fsyncs(monkeypatch, above=1_000_000)  # the first checkpoint (tens of MB) does not fit
    code, text = run_cli(teacher_args(lowres_manifest, out, "--epochs", "1"), capsys)
    assert code == 2 and "the disk is full" in text and ".pt" in text and "Traceback" not in text, text
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "failed" and "DiskFullError" in status["error"]
    assert not list(out.glob(".*.tmp")) and not (out / LOCK_NAME).exists()


def test_disk_full_during_manifest_build_and_softlabel_export(demo_pipeline, tmp_path, capsys, monkeypatch):
    root = fer_tree(tmp_path / "fer", per_class=40)
    fail_big_fsyncs(monkeypatch, above=2048)
    code, text = run_cli(["manifest", "build", "--source", f"fer2013={root}", "--out", tmp_path / "m.parquet", "-q"],
                         capsys)  # fmt: skip
    assert code == 2 and "the disk is full" in text and "m.parquet" in text, text
    assert not (tmp_path / "m.parquet").exists()
    teacher = next((demo_pipeline / "teachers").glob("*stageA*"))
    with pytest.raises(DiskFullError):
        export_softlabels(teacher, demo_pipeline / "manifests" / "demo.parquet", tmp_path / "sl.parquet",
                          splits=["train"], workers=0, device="cpu", show_progress=False)  # fmt: skip
    assert not (Path(f"{tmp_path / 'sl.parquet'}.parts") / LOCK_NAME).exists()


# --- 7. soft labels are checked when they are read ------------------------------------------------------


def rewrite_softlabels(src: Path, dest: Path, edit) -> Path:
    table = pq.read_table(src)
    df = edit(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
        {METADATA_KEY: table.schema.metadata[METADATA_KEY]}), dest)  # fmt: skip
    write_stamp(dest)
    return dest


@pytest.mark.parametrize("name, edit, message", [
    ("negative", lambda d: d.assign(prob_angry=d.prob_angry.where(d.index != 3, -0.2)), "row 4 .*negative"),
    ("unnormalized", lambda d: d.assign(prob_happy=d.prob_happy + (d.index == 5) * 0.5), "row 6 .*do not sum to 1"),
    ("nan", lambda d: d.assign(prob_sad=d.prob_sad.where(d.index != 0, np.nan)), "row 1 .*not a finite number"),
    ("duplicate", lambda d: pd.concat([d, d.iloc[[2]].assign(prob_angry=0.9, prob_happy=0.1 - 0.0)]),
     "appears 2 times"),
])  # fmt: skip
def test_bad_soft_labels_are_refused_naming_file_and_row(demo_pipeline, tmp_path, name, edit, message):
    bad = rewrite_softlabels(demo_pipeline / "softlabels" / "train.parquet", tmp_path / f"{name}.parquet", edit)
    with pytest.raises(InputError, match=message) as exc:
        load_softlabels(bad)
    assert str(bad) in str(exc.value)


def test_a_soft_label_file_edited_without_restamping_is_named_as_such(demo_pipeline, tmp_path):
    src = demo_pipeline / "softlabels" / "train.parquet"
    edited = tmp_path / "edited.parquet"
    rewrite_softlabels(src, edited, lambda d: d)  # a stamped copy
    stamp = Path(f"{edited}.sha256").read_bytes()
    rewrite_softlabels(src, edited, lambda d: d.assign(prob_angry=d.prob_happy, prob_happy=d.prob_angry))
    Path(f"{edited}.sha256").write_bytes(stamp)  # edited, not restamped
    with pytest.raises(StampMismatchError, match="the soft-label file was modified") as exc:
        load_softlabels(edited, demo_pipeline / "manifests" / "demo.parquet")
    assert str(edited) in str(exc.value) and "export-softlabels" in str(exc.value)


# --- 8. a manifest overwrite stopped between writes is visible in inspect --------------------------------


def test_inspect_tells_a_summary_that_describes_another_manifest(tmp_path, capsys):
    root = fer_tree(tmp_path / "fer")
    path = tmp_path / "m.parquet"
    build(root, path)
    summary = Path(f"{path}.summary.json")
    old_summary = summary.read_bytes()
    write_image(root / "train" / "happy" / "Training_777.jpg", 777)
    build_manifest(recipe_from_cli([f"fer2013={root}"], [], DedupPolicy("off", "off"), 1), path, overwrite=True,
                   show_progress=False)  # fmt: skip
    summary.write_bytes(old_summary)  # as if killed after the manifest and stamp, before the summary
    code, text = run_cli(["manifest", "inspect", path], capsys)
    assert code == 1 and "summary: STALE" in text and "stamp: FAILED" not in text


# --- 9. student --clahe ---------------------------------------------------------------------------------


def test_student_with_clahe_trains(lowres_manifest, tmp_path, capsys):
    code, text = run_cli(["student", "-m", lowres_manifest, "--loss", "ce", "--clahe", "--backbone", "test_resnet",
                          "--img-size", "32", "--epochs", "1", "-b", "32", "-j", "0", "--device", "cpu",
                          "--output-dir", tmp_path / "s", "--skip-onnx", "-q"], capsys)  # fmt: skip
    assert code == 0, text
    spec = json.loads((tmp_path / "s" / "preprocess.json").read_text())
    assert spec["clahe"] is True and spec["clahe_clip"] == 2.0 and spec["clahe_tile"] == 8


# --- 10. smaller ones -------------------------------------------------------------------------------------


def test_epoch_timing_covers_the_whole_epoch_with_step_checkpoints(lowres_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    code, text = run_cli(teacher_args(lowres_manifest, out, "--epochs", "1", "--checkpoint-every-steps", "2"), capsys)
    assert code == 0, text
    rec = json.loads((out / "history.json").read_text())[0]
    assert rec["img_per_sec"] == pytest.approx(rec["train_images"] / rec["epoch_sec"], rel=0.02)
    assert rec["epoch_sec"] <= rec["total_sec"] + 1e-6 and rec["epoch_sec"] > 0.5 * rec["total_sec"]


def test_temp_files_of_a_killed_write_are_removed_by_the_next_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    leftover = run / ".checkpoint_last.pt.k2j4x9_a.tmp"
    leftover.write_bytes(b"\0" * 1024)
    keep = run / "notes.tmp"
    keep.write_text("user file")
    with run_lock(run):
        pass
    assert not leftover.exists() and keep.exists()


def test_empty_class_folders_are_warned_and_huge_images_refused(tmp_path, capsys):
    root = fer_tree(tmp_path / "fer")
    (root / "train" / "fear").mkdir()
    code, text = run_cli(["manifest", "build", "--source", f"fer2013={root}", "--out", tmp_path / "m.parquet", "-q"],
                         capsys)  # fmt: skip
    assert code == 0 and "warning:" in text and "has no images" in text and "fear" in text, text
    import cv2

    huge = np.zeros((7000, 6000), np.uint8)  # 42 MP, over the bound
    cv2.imwrite(str(root / "train" / "happy" / "Training_4242.png"), huge)
    with pytest.raises(InputError, match="6000x7000 .*over the 40 MP"):
        build(root, tmp_path / "m2.parquet")


class KilledInFirstEvaluation(TeacherTrainer):
    """As if the process died while evaluating epoch 1, right after a step checkpoint at the epoch's end."""

    def evaluate(self, dataset, module=None):
        raise RunInterrupted("SIGKILL")


def test_a_run_stopped_during_evaluation_after_an_end_of_epoch_checkpoint_records_that_epochs_lr(
        lowres_manifest, tmp_path):  # fmt: skip
    from fertrain.engine import run_training
    from fertrain.teacher import resolve_teacher_config, train_teacher

    base = {"manifest": str(lowres_manifest), "backbone": "resnet10t", "head": "linear", "img_size": 32,
            "batch_size": 16, "workers": 0, "device": "cpu", "lr": 2e-3, "epochs": 2, "skip_onnx": True}  # fmt: skip
    ref = train_teacher(resolve_teacher_config({**base, "output_dir": str(tmp_path / "ref")}), show_progress=False)
    spe = ref.history[0]["global_step"]
    cfg = resolve_teacher_config({**base, "output_dir": str(tmp_path / "run"), "checkpoint_every_steps": spe})
    with pytest.raises(RunInterrupted):
        run_training(KilledInFirstEvaluation, cfg, tmp_path / "run", show_progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["step_in_epoch"] == spe
    done = train_teacher(cfg, show_progress=False)
    assert [r["lr"] for r in done.history] == pytest.approx([r["lr"] for r in ref.history], rel=1e-9)
    assert [r["val_accuracy"] for r in done.history] == pytest.approx([r["val_accuracy"] for r in ref.history])


def test_every_yaml_file_a_user_passes_reports_a_syntax_error_with_its_role_file_and_line(tmp_path):
    """Configs, recipes, plans and unfreeze schedules are read by one reader: a broken file is one
    ConfigError naming what it is for, the file and the line (an unfreeze schedule used to raise
    yaml's own error with a traceback)."""
    from fertrain.errors import ConfigError
    from fertrain.manifests.recipe import load_recipe
    from fertrain.pipeline.plan import load_plan
    from fertrain.student.freezing import load_custom_schedule
    from fertrain.teacher import resolve_teacher_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("first: 1\nsecond: [1, 2\n")
    readers = {"--config": lambda p: resolve_teacher_config({"manifest": "m.parquet"}, p), "recipe": load_recipe,
               "plan": load_plan, "--unfreeze-schedule": lambda p: load_custom_schedule(str(p), [])}  # fmt: skip
    for role, read in readers.items():
        with pytest.raises(ConfigError, match=rf"^{role} .*bad\.yaml:\d+: not valid YAML") as err:
            read(bad)
        assert "\n" not in str(err.value)
        with pytest.raises(ConfigError, match=rf"^{role} .*missing\.yaml: file not found"):
            read(tmp_path / "missing.yaml")
