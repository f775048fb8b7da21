"""Run layer: lock contention between real processes, stale locks, reports, list and clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fertrain.atomic import atomic_write_json, atomic_write_text
from fertrain.console import console
from fertrain.errors import FertrainError
from fertrain.manifests import DedupPolicy, SourceFilter, build_manifest, recipe_from_cli
from fertrain.runs import (
    LOCK_NAME,
    RunLockedError,
    StaleLockError,
    clean_runs,
    find_runs,
    lock_state,
    open_run,
    read_lock,
    run_lock,
)

from .clitools import run_cli
from .conftest import write_image

HOLDER = """
import sys, time, pathlib
from fertrain.runs.lock import run_lock
out, ready, stop = map(pathlib.Path, sys.argv[1:4])
with run_lock(out, command="holder-process"):
    ready.write_text("held")
    while not stop.exists():
        time.sleep(0.05)
"""

CONTENDER = """
import sys, time
from fertrain.runs.lock import run_lock, RunLockedError
t = time.perf_counter()
try:
    with run_lock(sys.argv[1], command="contender"):
        print("ACQUIRED")
except RunLockedError as exc:
    print(f"REFUSED after {time.perf_counter() - t:.3f}s: {exc}")
    sys.exit(3)
"""


def start_holder(out: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ready), str(stop)])
    deadline = time.time() + 30
    while not ready.exists():
        assert proc.poll() is None, "holder died"
        assert time.time() < deadline, "holder never took the lock"
        time.sleep(0.05)
    return proc, stop


def test_second_process_is_refused_quickly_and_holder_is_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    holder, stop = start_holder(out, tmp_path)
    try:
        before = (out / LOCK_NAME).read_bytes()
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", CONTENDER, str(out)], capture_output=True, text=True, timeout=60)
        wall = time.perf_counter() - t0
        assert res.returncode == 3, res.stdout + res.stderr
        refused_after = float(res.stdout.split("REFUSED after ")[1].split("s:")[0])
        assert refused_after < 2.0 and wall < 20
        assert f"pid {holder.pid}" in res.stdout and "holder-process" in res.stdout
        # a real command refuses too, with exit code 2 and who holds it
        code, text = run_cli(["demo", "run", "--out", out], capsys)
        assert code == 2 and "locked by a running process" in text and str(holder.pid) in text
        assert holder.poll() is None  # the first run goes on
        assert (out / LOCK_NAME).read_bytes() == before
        assert lock_state(out) == "running"
    finally:
        stop.write_text("stop")
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert not (out / LOCK_NAME).exists() and lock_state(out) == "free"
    with run_lock(out) as payload:  # free again
        assert payload["pid"] == os.getpid()


def test_killed_holder_leaves_a_stale_lock_that_needs_recovery(tmp_path):
    out = tmp_path / "run"
    holder, _ = start_holder(out, tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert lock_state(out) == "stale"
    with pytest.raises(StaleLockError, match=f"pid {holder.pid} is no longer running") as exc, run_lock(out):
        pass
    assert "--recover-stale-lock" in str(exc.value)
    assert read_lock(out)["pid"] == holder.pid  # refusal changed nothing
    with run_lock(out, recover_stale=True) as payload:
        assert payload["recovered_from"]["pid"] == holder.pid
    assert lock_state(out) == "free"


def test_unreadable_lock_payload_is_stale_not_ignored(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("{not json")
    with pytest.raises(StaleLockError, match="unreadable"), run_lock(out):
        pass


def test_in_process_second_holder_is_refused(tmp_path):
    with run_lock(tmp_path / "r", command="first"), pytest.raises(RunLockedError, match="command: first"):
        with run_lock(tmp_path / "r"):
            pass


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_json(target, {"ok": 1})

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    from fertrain.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp files left
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


@pytest.fixture
def small_manifest(tmp_path) -> Path:
    root = tmp_path / "fer"
    seed = 0
    for split, prefix in (("train", "Training"), ("validation", "PublicTest")):
        for cls in ("angry", "happy", "sad"):
            for _ in range(4):
                seed += 1
                write_image(root / split / cls / f"{prefix}_{seed}.jpg", seed)
    out = tmp_path / "m.parquet"
    build_manifest(recipe_from_cli([f"fer2013:src={root}"], [], DedupPolicy(), 1), out, show_progress=False)
    return out


def test_open_run_writes_reports_and_status(tmp_path, small_manifest):
    out = tmp_path / "runs" / "a"
    with open_run(out, seed=1337, manifest=small_manifest, source_filter=SourceFilter(splits=["train"]),
                  command="fertrain test") as run:  # fmt: skip
        assert len(run.data.rows) == 12 and set(run.data.rows.split) == {"train"}
        assert read_lock(out)["command"] == "fertrain test"
    env = json.loads((out / "environment.json").read_text())
    for key in ("python", "platform", "torch", "cuda", "cudnn", "gpus", "packages", "command", "seed", "git"):
        assert key in env
    assert env["seed"] == 1337 and "torch" in env["packages"] and "timm" in env["packages"]
    report = json.loads((out / "alignmentreport.json").read_text())
    assert report["manifest_sha256"] == (Path(f"{small_manifest}.sha256")).read_text().split()[0]
    assert report["before_filter"]["rows"] == 24 and report["after_filter"]["rows"] == 12
    assert report["after_filter"]["by_source_split_class"]["src"]["train"]["Happy"] == 4
    assert report["source_filter"] == {"include_sources": [], "exclude_sources": [], "splits": ["train"]}
    assert report["output_dir"] == str(out)
    assert json.loads((out / "run_status.json").read_text())["status"] == "finished"
    assert not (out / LOCK_NAME).exists()


def test_failed_run_is_recorded_and_changed_manifest_is_refused(tmp_path, small_manifest):
    out = tmp_path / "runs" / "b"
    with pytest.raises(ZeroDivisionError), open_run(out, manifest=small_manifest) as run:
        run.mark_started()
        _ = 1 / 0
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "failed" and "ZeroDivisionError" in status["error"]
    # rebuild the manifest with different content: resuming in the same directory is refused
    report = json.loads((out / "alignmentreport.json").read_text())
    report["manifest_sha256"] = "0" * 64
    (out / "alignmentreport.json").write_text(json.dumps(report))
    with pytest.raises(FertrainError, match="was run on manifest sha256 000000000000"):
        with open_run(out, manifest=small_manifest):
            pass
    with open_run(out, manifest=small_manifest, allow_manifest_change=True):
        pass


def test_runs_list_and_clean(tmp_path, capsys):
    root = tmp_path / "outputs"
    with open_run(root / "teachers" / "done"):
        pass
    with pytest.raises(RuntimeError), open_run(root / "teachers" / "broken") as run:
        run.mark_started()
        raise RuntimeError("nan loss")
    stale_holder, _ = start_holder(root / "teachers" / "crashed", tmp_path)
    stale_holder.kill()
    stale_holder.wait()
    (tmp_path / "ready").unlink()
    live, stop = start_holder(root / "students" / "live", tmp_path)
    try:
        states = {r.path.name: r.state for r in find_runs(root)}
        assert states == {"done": "finished", "broken": "failed", "crashed": "stale", "live": "running"}
        code, text = run_cli(["runs", "list", root], capsys)
        assert code == 0 and "4 run(s)" in text and "stale" in text and "running" in text
        # refusals: a live run, a stale run, a folder containing a live run, the root, outside the root
        for target in (root / "students" / "live", root / "teachers" / "crashed", root / "students", root,
                       tmp_path):  # fmt: skip
            with pytest.raises(FertrainError, match="nothing deleted"):
                clean_runs([target], root)
        code, text = run_cli(["runs", "clean", "--root", root, root / "teachers" / "done", root / "students"], capsys)
        assert code == 2 and "nothing deleted" in text
        assert (root / "teachers" / "done").exists()  # all-or-nothing
        assert clean_runs([root / "teachers" / "done"], root, dry_run=True) == [(root / "teachers" / "done").resolve()]
        assert (root / "teachers" / "done").exists()
        targets = [root / "teachers" / "done", root / "teachers" / "broken"]
        code, text = run_cli(["runs", "clean", "--root", root, *targets], capsys)
        assert code == 0 and not (root / "teachers" / "done").exists() and not (root / "teachers" / "broken").exists()
        link = tmp_path / "sneaky"
        link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        (tmp_path / "elsewhere").mkdir()
        inside_link = root / "teachers" / "link"
        inside_link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        with pytest.raises(FertrainError, match="outside the root"):
            clean_runs([inside_link], root)
    finally:
        stop.write_text("stop")
        live.wait(timeout=30)


# --- runs compare ---------------------------------------------------------------------------------------------


def test_runs_compare_reads_the_demo_runs_as_their_checkpoints_and_reports_say(demo_pipeline, tmp_path, capsys):
    """The demo's two teachers, its student and its ensemble: each run's best epoch and validation metrics are
    those its best.pt holds, each evaluation those `fertrain evaluate` wrote; --json and --plot write files."""
    import torch

    from fertrain.runs.compare import compare_runs

    out_json, out_png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    code, text = run_cli(["runs", "compare", demo_pipeline, "--json", out_json, "--plot", out_png], capsys)
    assert code == 0, text
    rows = {r["name"]: r for r in json.loads(out_json.read_text())}
    runs = {name: r for name, r in rows.items() if r["kind"] == "run"}
    assert len(runs) == 3 and {n.split("/")[0] for n in runs} == {"teachers", "students"}, sorted(rows)
    for row in runs.values():
        best = torch.load(Path(row["path"]) / "best.pt", weights_only=True, map_location="cpu")
        assert row["best_epoch"] == best["epoch"], row["name"]
        assert row["val_accuracy"] == pytest.approx(best["metrics"]["accuracy"], abs=1e-9)
        assert row["val_macro_f1"] == pytest.approx(best["metrics"]["macro_f1"], abs=1e-9)
        history = json.loads((Path(row["path"]) / "history.json").read_text())
        assert row["epochs_done"] == len(history) and row["train_minutes"] > 0 and row["median_img_per_sec"] > 0
    (ensemble,) = [r for r in rows.values() if r["kind"] == "ensemble"]
    report = json.loads(Path(ensemble["path"]).with_name("demo_AB.evaluation_demo_test.json").read_text())
    assert ensemble["evaluations"]["demo test none"]["accuracy"] == report["accuracy"]
    assert set(ensemble["evaluations"]["demo test none"]["recall"]) == set(report["per_class"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 20_000
    assert "4 run(s)" in text and Path(ensemble["path"]).name == "demo_AB.json"
    # sorted by validation macro-F1: the runs in descending order, the ensemble (no training curve) last
    ranked = compare_runs([demo_pipeline], sort="val-f1")
    f1 = [r.val_macro_f1 for r in ranked if r.kind == "run"]
    assert f1 == sorted(f1, reverse=True) and ranked[-1].kind == "ensemble"


def _epoch(epoch: int, raw_f1: float, ema_f1: float | None = None, evaluated: bool = True) -> dict:
    rec = {"epoch": epoch, "train_loss": 1.0 / epoch, "total_sec": 30.0 * epoch, "img_per_sec": 1000.0 + epoch}
    if evaluated:
        rec.update(val_accuracy=raw_f1 + 0.01, val_macro_f1=raw_f1, val_nll=1.0 - raw_f1, selected_weights="model")
        if ema_f1 is not None:
            rec.update(ema_val_accuracy=ema_f1 + 0.01, ema_val_macro_f1=ema_f1, ema_val_nll=1.0 - ema_f1)
            rec["selected_weights"] = "ema" if ema_f1 > raw_f1 else "model"  # the trainer: a tie keeps the raw
    return rec


def test_runs_compare_picks_the_best_epoch_as_the_trainer_does(tmp_path):
    """EMA weights selected on an epoch carry its metric; epochs without validation are skipped; a tie keeps the
    first epoch (best.pt is replaced only by a strictly better one); the selection metric comes from config.yaml."""
    from fertrain.runs.compare import compare_runs

    run = tmp_path / "ema_run"
    run.mkdir()
    history = [_epoch(1, 0.40, 0.35), _epoch(2, 0.50, 0.62), _epoch(3, 0.0, evaluated=False),
               _epoch(4, 0.61, 0.62), _epoch(5, 0.60, 0.55)]  # fmt: skip
    atomic_write_json(run / "history.json", history)
    atomic_write_text(run / "config.yaml", "epochs: 6\nselect_metric: macro_f1\n")
    (row,) = compare_runs([run])
    assert (row.best_epoch, row.best_weights) == (2, "ema")  # epoch 4's EMA ties it, epoch 2 stays
    assert row.val_macro_f1 == 0.62 and row.val_accuracy == pytest.approx(0.63) and row.val_nll == pytest.approx(0.38)
    assert (row.epochs_done, row.epochs, row.train_minutes, row.median_img_per_sec) == (5, 6, 2.5, 1003.0)
    assert [c["epoch"] for c in row.curve] == [1, 2, 4, 5]
    atomic_write_text(run / "config.yaml", "epochs: 6\nselect_metric: accuracy\n")
    history[4]["val_accuracy"] = 0.70  # the raw weights' accuracy now leads at epoch 5
    atomic_write_json(run / "history.json", history)
    (row,) = compare_runs([run])
    assert (row.best_epoch, row.best_weights, row.select_metric) == (5, "model", "accuracy")
    for rec, auc in zip(history, (0.80, 0.81, None, 0.79, 0.80), strict=True):
        if auc is not None:
            rec["val_auc"], rec["ema_val_auc"] = auc, auc + 0.02  # EMA selected where it won on macro-F1
    atomic_write_json(run / "history.json", history)
    atomic_write_text(run / "config.yaml", "select_metric: auc\nstrategy: two-stage\nepochs_s1: 2\nepochs_s2: 3\n")
    (row,) = compare_runs([run])
    assert (row.best_epoch, row.best_value, row.epochs) == (2, pytest.approx(0.83), 5)


def test_runs_compare_names_what_it_cannot_read(tmp_path, capsys):
    run = tmp_path / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "history.json").write_text('[{"epoch": 1, "val_accuracy": 0.5')
    code, text = run_cli(["runs", "compare", run], capsys)
    assert code == 2 and "broken/history.json" in text and "not valid JSON" in text, text
    (run / "history.json").write_text('{"epoch": 1}')
    code, text = run_cli(["runs", "compare", tmp_path / "runs"], capsys)
    assert code == 2 and "expected a list of per-epoch records" in text, text
    code, text = run_cli(["runs", "compare", tmp_path / "nowhere"], capsys)
    assert code == 2 and "nowhere" in text and "no such run directory" in text, text
    (tmp_path / "empty").mkdir()
    code, text = run_cli(["runs", "compare", tmp_path / "empty"], capsys)
    assert code == 2 and "holds no training run" in text, text
    lone = tmp_path / "ens.json"
    lone.write_text('{"format": "fertrain-ensemble-v1", "members": []}')
    code, text = run_cli(["runs", "compare", lone], capsys)
    assert code == 2 and "ens.json" in text and "fertrain evaluate" in text, text
    atomic_write_json(tmp_path / "ens.evaluation_m_val.json", {"manifest": "m.parquet", "split": "val", "tta": "none",
                                                               "accuracy": 0.5, "macro_f1": 0.4})  # fmt: skip
    code, text = run_cli(["runs", "compare", lone, "--plot", tmp_path / "c.png", "--json", tmp_path / "c.json"], capsys)
    assert code == 2 and "--plot" in text and "no training curves" in text, text
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "c.json").exists()  # refused before writing
    code, text = run_cli(["runs", "compare", lone], capsys)
    assert code == 0 and "0.500 / 0.400" in text, text
    (run / "history.json").write_text('[{"epoch": 1, "val_accuracy": 0.5, "val_macro_f1": 0.4}]')
    code, text = run_cli(["runs", "compare", run, "--sort", "speed"], capsys)
    assert code == 2 and "--sort" in text and "val-acc" in text, text


def _repeat(root: Path, name: str, seed: int, f1s: list[float], manifest_sha: str, evaluations: dict[str, float],
            inputs: dict[str, str] | None = None, **options) -> Path:  # fmt: skip
    """A run directory as the trainer and `fertrain evaluate` leave it: history, config, alignment report
    (`inputs`: {option: sha256} of the files options name, the path being the option's value)."""
    run = root / name
    run.mkdir(parents=True)
    atomic_write_json(run / "history.json", [_epoch(i + 1, f1) for i, f1 in enumerate(f1s)])
    config = {"backbone": "fer_vgg", "lr": 0.1, "epochs": len(f1s), "manifest": "/data/m.parquet", "seed": seed,
              "output_dir": str(run), "workers": 8, **options}  # fmt: skip
    atomic_write_text(run / "config.yaml", "".join(f"{k}: {v}\n" for k, v in config.items()))
    recorded = {option: {"path": config[option], "sha256": sha} for option, sha in (inputs or {}).items()}
    atomic_write_json(run / "alignmentreport.json", {"manifest": config["manifest"], "manifest_sha256": manifest_sha,
                                                     "inputs": recorded})  # fmt: skip
    for tta, accuracy in evaluations.items():
        suffix = "" if tta == "none" else f"_tta-{tta}"
        atomic_write_json(run / f"evaluation_m_val{suffix}.json", {"manifest": "m.parquet", "split": "val", "tta": tta,
                                                                  "accuracy": accuracy, "macro_f1": accuracy - 0.01})
    return run


def test_runs_compare_seeds_folds_the_repeats_of_one_experiment(tmp_path, capsys, monkeypatch):
    """Runs that differ only in the seed and where or how fast they ran are one experiment (mean ± sample std);
    another option, or the same manifest path holding other content, is another experiment. Soft labels count
    by content too: a copy elsewhere is the same experiment, a file exported again at the same path is not."""
    import statistics

    from fertrain.runs.compare import compare_runs, seed_groups

    out = tmp_path / "out"
    _repeat(out, "drop_1337", 1337, [0.60, 0.66], "aa", {"none": 0.700, "ten": 0.720})
    _repeat(out, "drop_2", 2, [0.62, 0.61], "aa", {"none": 0.690, "ten": 0.714}, workers=4, device="cuda:1")
    _repeat(out, "drop_3", 3, [0.64, 0.65], "aa", {"none": 0.710})  # not evaluated with ten-crop
    _repeat(out, "lr2_1337", 1337, [0.50, 0.55], "aa", {"none": 0.650}, lr=0.2)
    _repeat(out, "other_data_1337", 1337, [0.58, 0.59], "bb", {"none": 0.640})  # same manifest path, other sha256
    _repeat(out, "kd_1337", 1337, [0.70, 0.71], "aa", {"none": 0.72}, {"softlabels": "s1"}, softlabels="/a/oof.parquet")
    _repeat(out, "kd_2", 2, [0.70, 0.72], "aa", {"none": 0.73}, {"softlabels": "s1"}, softlabels="/b/copy.parquet")
    _repeat(out, "kd_reexported_3", 3, [0.69, 0.70], "aa", {"none": 0.71}, {"softlabels": "s2"},
            softlabels="/a/oof.parquet")  # fmt: skip
    atomic_write_json(out / "ens.json", {"format": "fertrain-ensemble-v1", "members": []})
    atomic_write_json(out / "ens.evaluation_m_val.json", {"manifest": "m.parquet", "split": "val", "tta": "none",
                                                          "accuracy": 0.73, "macro_f1": 0.72})  # fmt: skip
    rows = compare_runs([out])
    groups = {g.name: g for g in seed_groups(rows)}
    assert sorted(groups) == ["drop", "ens", "kd", "kd_reexported_3", "lr2_1337", "other_data_1337"], sorted(groups)
    assert groups["kd"].members == ["kd_1337", "kd_2"]
    drop = groups["drop"]
    assert (drop.members, drop.seeds) == (["drop_1337", "drop_2", "drop_3"], [1337, 2, 3])
    best = [r.val_accuracy for r in rows if r.name.startswith("drop")]  # best epochs 2, 1, 2
    assert best == pytest.approx([0.67, 0.63, 0.66])
    assert drop.val_accuracy.mean == pytest.approx(statistics.fmean(best))
    assert drop.val_accuracy.std == pytest.approx(statistics.stdev(best)) and drop.val_accuracy.n == 3
    single, ten = drop.evaluations["m val none"], drop.evaluations["m val ten"]
    assert single["accuracy"].mean == pytest.approx(0.70) and single["accuracy"].std == pytest.approx(0.01)
    assert ten["accuracy"].n == 2 and ten["accuracy"].mean == pytest.approx(0.717)
    assert groups["lr2_1337"].val_accuracy.std is None and groups["ens"].kind == "ensemble"
    monkeypatch.setattr(console, "width", 200)  # a row per experiment, no cell folded
    code, text = run_cli(["runs", "compare", out, "--seeds", "--json", tmp_path / "g.json"], capsys)
    assert code == 0, text
    assert "0.700 ± 0.010 / 0.690 ± 0.010" in text and "(2 of 3)" in text and "1337, 2, 3" in text, text
    assert "9 run(s) in 6 experiment(s)" in text, text
    written = {g["name"]: g for g in json.loads((tmp_path / "g.json").read_text())}
    assert written["drop"]["evaluations"]["m val ten"]["accuracy"]["n"] == 2
    assert written["drop"]["seeds"] == [1337, 2, 3] and written["drop"]["members"] == ["drop_1337", "drop_2", "drop_3"]


def test_runs_compare_seeds_on_trained_runs(lowres_manifest, tmp_path, capsys):
    """Real teacher runs: two seeds of one command fold into one experiment with the runs' own numbers; the same
    command with another --lr stays apart."""
    import statistics

    tiny = ["--manifest", str(lowres_manifest), "--backbone", "test_convnext", "--head", "linear", "--img-size",
            "32", "--epochs", "1", "-b", "32", "-j", "0", "--device", "cpu", "--skip-onnx", "-q"]  # fmt: skip
    for name, extra in (("s1", ["--seed", "1"]), ("s2", ["--seed", "2", "-j", "1"]), ("lr", ["--lr", "5e-3"])):
        code, text = run_cli(["teacher", *tiny, *extra, "--output-dir", tmp_path / "runs" / name], capsys)
        assert code == 0, text
    code, text = run_cli(["runs", "compare", tmp_path / "runs", "--seeds", "--json", tmp_path / "g.json"], capsys)
    assert code == 0, text
    groups = {g["name"]: g for g in json.loads((tmp_path / "g.json").read_text())}
    assert sorted(groups) == ["lr", "s"] and groups["s"]["seeds"] == [1, 2], sorted(groups)
    code, text = run_cli(["runs", "compare", tmp_path / "runs", "--json", tmp_path / "r.json"], capsys)
    assert code == 0, text
    rows = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    accuracies = [rows["s1"]["val_accuracy"], rows["s2"]["val_accuracy"]]
    assert groups["s"]["val_accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    assert groups["s"]["val_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
