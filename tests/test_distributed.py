"""torchrun data parallelism on CPU (gloo, 2 processes) on demo data: the same training as one
process with the same global batch, one writer, kill + resume, and ranks that disagree."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from fertrain.engine.distributed import DistContext
from fertrain.errors import ConfigError
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.softlabels.io import PROB_COLUMNS, parts_dir

# test_convnext has no BatchNorm: batch statistics do not depend on how a batch is split, so two
# ranks of 16 must compute exactly what one process computes on the 32
TINY = ["--backbone", "test_convnext", "--head", "linear", "--img-size", "32", "-j", "0", "--device", "cpu",
        "--skip-onnx", "--lr", "2e-3", "--aug", "scale=[0.85,1]", "-q"]  # fmt: skip


def teacher_cmd(manifest: Path, out: Path, nproc: int, batch: int, *extra: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    return [*(launcher if nproc > 1 else [sys.executable]), "-m", "fertrain", "teacher", "--manifest",
            str(manifest), "--output-dir", str(out), "-b", str(batch), *TINY, *extra]  # fmt: skip


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process below it."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    for p in tree:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(p, signal.SIGKILL)


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


@pytest.mark.parametrize("fold", [(), ("--fold", "1", "--folds", "3")], ids=["all-rows", "fold"])
def test_two_ranks_with_the_same_global_batch_train_as_one_process(lowres_manifest, tmp_path, fold):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run(teacher_cmd(lowres_manifest, one, 1, 32, "--epochs", "2", *fold))
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = run(teacher_cmd(lowres_manifest, two, 2, 16, "--epochs", "2", *fold))
    assert r2.returncode == 0, r2.stderr[-2000:]
    h1, h2 = history(one), history(two)
    if fold:  # the ranks hold out the fold one process holds out, and one list of it is written
        train_rows = (pd.read_parquet(lowres_manifest)["split"] == "train").sum()
        held = json.loads((two / "heldout_rows.json").read_text())
        assert held == json.loads((one / "heldout_rows.json").read_text())
        assert 0 < held["rows"] < train_rows
        assert h2[0]["train_images"] == h1[0]["train_images"] <= train_rows - held["rows"]
    assert [r["global_step"] for r in h2] == [r["global_step"] for r in h1]
    assert [r["train_images"] for r in h2] == [r["train_images"] for r in h1]
    # the first epoch's mean loss starts from the same first step; the second follows averaged updates
    for a, b in zip(h1, h2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_nll"] == pytest.approx(a["val_nll"], rel=1e-4)
    # one writer: one summary printed, a run status of rank 0, the resume state knows both ranks
    assert (r2.stdout + r2.stderr).count("teacher run") == 1
    assert json.loads((two / "run_status.json").read_text())["status"] == "finished"
    last = load_checkpoint(two / "checkpoint_last.pt")
    assert last["world_size"] == 2 and len(last["rng_ranks"]) == 2
    assert not list(two.glob("*.tmp*"))


def test_killed_torchrun_resumes_at_the_same_global_step_and_refuses_another_world_size(lowres_manifest, tmp_path):
    out, straight = tmp_path / "killed", tmp_path / "straight"
    # 8 epochs of 7 steps, about 0.3 s each on 2 cores: the kill after step 9 must land before the last step
    # (with 3 epochs an idle machine sometimes finished the run between two polls)
    args = ("--epochs", "8", "--checkpoint-every-steps", "1")
    assert run(teacher_cmd(lowres_manifest, straight, 2, 16, *args)).returncode == 0
    proc = subprocess.Popen(teacher_cmd(lowres_manifest, out, 2, 16, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 240
    step = 0
    while time.monotonic() < deadline and step < 9:  # mid epoch 2 (7 steps per epoch)
        time.sleep(0.2)
        try:
            step = load_checkpoint(out / "checkpoint_last.pt")["global_step"]
        except Exception:  # not written yet
            continue
    kill_tree(proc.pid)  # as a crash would: torchrun and its ranks (which run in sessions of their own)
    proc.wait()
    saved = load_checkpoint(out / "checkpoint_last.pt")
    killed_at = saved["global_step"]
    assert 9 <= killed_at < 56
    # one process cannot continue a two-process run: the global batch would change
    refused = run(teacher_cmd(lowres_manifest, out, 1, 16, *args, "--recover-stale-lock"))
    assert refused.returncode != 0 and "--nproc-per-node: 2 -> 1" in refused.stderr + refused.stdout
    resumed = run(teacher_cmd(lowres_manifest, out, 2, 16, *args, "--recover-stale-lock"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {saved['epoch']}, step {killed_at}" in resumed.stdout + resumed.stderr
    a, b = history(out), history(straight)
    assert [r["global_step"] for r in a] == [r["global_step"] for r in b] == list(range(7, 57, 7))
    for ra, rb in zip(a, b, strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)


def test_a_stop_signal_forwarded_by_torchrun_stops_every_rank_at_one_checkpoint(lowres_manifest, tmp_path):
    """Ctrl-C or a scheduler's SIGTERM reaches torchrun, which passes it to each rank: all ranks agree on one
    step, rank 0 saves the checkpoint of that step and the run ends `interrupted` (before, a rank other than
    0 died at once and rank 0 failed in its next collective); a plain re-run resumes from that step."""
    out = tmp_path / "stopped"
    args = ("--epochs", "4")  # no periodic checkpoints: the ranks stop where they read their losses or at an epoch end
    proc = subprocess.Popen(teacher_cmd(lowres_manifest, out, 2, 16, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out / "history.json").is_file():  # into the second epoch
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # to torchrun alone, as a terminal's Ctrl-C reaches it (the ranks have sessions)
    _, err = proc.communicate(timeout=120)
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "interrupted", err[-3000:]
    stopped_at = load_checkpoint(out / "checkpoint_last.pt")["global_step"]
    assert f"stopped after step {stopped_at}, checkpoint_last.pt saved" in status["error"]
    assert err.count("stopped: interrupted by SIGINT") == 1  # said once, by rank 0
    assert (stopped_at % 10 == 0 or stopped_at % 7 == 0) and 7 <= stopped_at < 28
    resumed = run(teacher_cmd(lowres_manifest, out, 2, 16, *args))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {stopped_at // 7}, step {stopped_at}" in resumed.stdout + resumed.stderr
    assert [r["global_step"] for r in history(out)] == [7, 14, 21, 28]


def _agreement(rank: int, init: str, results: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    ctx = DistContext(rank, 2, rank)
    outcome = "agreed"
    try:
        ctx.check_agreement({"lr": 0.1, "device": f"cuda:{rank}"}, "a" * 64)  # devices may differ
        ctx.check_agreement({"lr": 0.1 if rank == 0 else 0.2, "device": "cpu"}, "a" * 64)
    except ConfigError as exc:
        outcome = str(exc)
    Path(results, f"rank{rank}").write_text(outcome)
    torch.distributed.destroy_process_group()


def test_ranks_that_disagree_on_the_config_stop_with_the_difference_named(tmp_path):
    mp.spawn(_agreement, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}").read_text() == "torchrun ranks disagree: rank 1 has --lr 0.2 (rank 0: 0.1)"


def test_a_rank_other_than_0_reads_the_run_without_writing_or_locking(lowres_manifest, tmp_path):
    from fertrain.manifests import SourceFilter
    from fertrain.runs import read_lock, read_run

    out = tmp_path / "run"
    out.mkdir()
    run = read_run(out, lowres_manifest, SourceFilter(splits=["train", "val"]))
    assert set(run.data.rows["split"]) == {"train", "val"} and len(run.data.manifest.sha256) == 64
    run.note("resume_overrides", [{"at_step": 3}])  # recorded by rank 0 only
    run.mark_started()
    assert list(out.iterdir()) == [] and read_lock(out) is None


def test_bench_train_under_torchrun_reports_all_ranks_together(lowres_manifest):
    """`torchrun -m fertrain bench train`: two ranks step in lockstep with averaged gradients; one
    report (rank 0's), with img/s for both ranks together."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = run([*launcher, "-m", "fertrain", "bench", "train", "--manifest", str(lowres_manifest), "--backbone",
                "test_convnext", "--img-size", "32", "-b", "8", "--steps", "3", "--warmup", "1", "-j", "0",
                "--device", "cpu", "--no-amp", "--no-channels-last"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stderr  # fertrain's console writes to stderr
    assert out.count('"world_size"') == 1  # printed once, by rank 0
    report = json.loads(out[out.index('{\n  "device"') : out.index("}", out.index('"world_size"')) + 1])
    assert report["world_size"] == 2 and report["rank"] == 0 and report["batch_size"] == 8
    assert report["model_only_img_s"] > 0 and report["end_to_end_img_s"] > 0


def test_export_softlabels_under_torchrun_writes_the_file_one_process_writes(demo_pipeline, tmp_path):
    """Two ranks label alternate chunks; rank 0 joins them: the same rows, probabilities and stamp
    as one process, also when the ranks finish an export one process started."""
    from fertrain.softlabels import export_softlabels

    teacher = next(d for d in (demo_pipeline / "teachers").iterdir() if "_stageA" in d.name)
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    kw = {"splits": ["val"], "chunk_size": 60, "device": "cpu", "workers": 0, "show_progress": False}
    one = export_softlabels(teacher, manifest, tmp_path / "one.parquet", **kw)
    started = export_softlabels(teacher, manifest, tmp_path / "resumed.parquet", max_chunks=2, **kw)
    assert started == {"complete": False, "chunks_done": 2, "chunks": 5}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for name in ("two", "resumed"):
        proc = run([*launcher, "-m", "fertrain", "export-softlabels", "--teacher", str(teacher), "--manifest",
                    str(manifest), "--split", "val", "--out", str(tmp_path / f"{name}.parquet"), "--chunk-size", "60",
                    "--device", "cpu", "-j", "0", "-q"])  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (proc.stdout + proc.stderr).count("wrote") == 1  # rank 0 alone writes and reports
        assert not (tmp_path / f"{name}.parquet.parts").exists()
        expected = pd.read_parquet(tmp_path / "one.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), expected)
        stamp = (tmp_path / f"{name}.parquet.sha256").read_text().split()[0]
        assert stamp == one["sha256"]


def test_a_signal_forwarded_by_torchrun_ends_an_export_on_every_rank_and_a_re_run_finishes_it(demo_pipeline, tmp_path):
    """torchrun forwards the signal to both ranks: the finished chunks stay, `<out>.parts/run_status.json`
    says `interrupted` (what a pipeline reads: torchrun exits 1 however its ranks ended; before, the stage was
    recorded `failed`), rank 0 alone says how many chunks were saved, and a plain re-run completes the file
    from the saved chunks."""
    teacher = next(d for d in (demo_pipeline / "teachers").iterdir() if "_stageA" in d.name)
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    out = tmp_path / "soft.parquet"
    parts = parts_dir(out)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd = [*launcher, "-m", "fertrain", "export-softlabels", "--teacher", str(teacher), "--manifest", str(manifest),
           "--out", str(out), "--chunk-size", "10", "--tta", "ten", "--device", "cpu", "-j", "0", "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # to torchrun alone, which forwards it to both ranks
    _, err = proc.communicate(timeout=120)
    status = json.loads((parts / "run_status.json").read_text())
    assert status["status"] == "interrupted", err[-3000:]
    saved = sorted(parts.glob("part-*.parquet"))
    rows = pd.read_parquet(manifest)
    train_ids = rows.loc[rows.split == "train", "row_id"].astype(str).tolist()
    n_chunks = -(-len(train_ids) // 10)
    assert 2 <= len(saved) < n_chunks and not out.exists()
    assert err.count("stopped:") == 1  # rank 0's; the other rank's signal ended it without a word
    assert re.search(rf"stopped: interrupted by SIGINT: \d+ of {n_chunks} chunks saved in ", err), err[-3000:]
    marked = pd.read_parquet(saved[0])
    marked.loc[0, list(PROB_COLUMNS)] = 1 / len(PROB_COLUMNS)  # no teacher gives this: shows the part was kept
    marked.to_parquet(saved[0], index=False)
    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not parts.exists()
    labels = pd.read_parquet(out)
    assert labels["row_id"].tolist() == train_ids  # every row once, in manifest order
    first = labels.set_index("row_id").loc[marked.loc[0, "row_id"], list(PROB_COLUMNS)]
    assert first.tolist() == pytest.approx([1 / len(PROB_COLUMNS)] * len(PROB_COLUMNS), abs=1e-7)  # not labelled again
