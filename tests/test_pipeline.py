"""`fertrain pipeline` and the POSIX runners, for real on the demo data: the smoke plan end to end
and again as a no-op, a pipeline killed with SIGKILL inside a teacher stage resuming it, Stage B
initialized from Stage A once, changed inputs refused unless --rerun, lock-aware cleaning, and
plan validation errors that name the file and the key."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import load_manifest
from fertrain.pipeline import load_plan, plan_status, run_plan
from fertrain.pipeline.plan import Stage
from fertrain.pipeline.runner import Stamps, ended_state, output_of, prepare_stage
from fertrain.runs import open_run
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.runs.signals import RunInterrupted
from fertrain.runs.status import read_status, recorded_status
from fertrain.timestamps import LOCAL_ISO

from .clitools import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fertrain" / "configs"


def bash(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(REPO / "runners" / script), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_smoke_runner_completes_the_demo_plan_and_a_second_run_does_nothing(tmp_path):
    root = tmp_path / "smoke"
    first = bash("smoke_two_stage.sh", "--root", root, "--log-dir", tmp_path / "logs")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "plan complete: 9 stage(s) run" in first.stdout
    state = json.loads((root / "pipeline_state.json").read_text())
    assert [s for s, r in state.items() if r["state"] == "done"] == [s.name for s in load_plan(
        REPO / "runners" / "plans" / "demo.yaml").stages]  # fmt: skip
    assert (root / "students" / "student_dkd" / "best.pt").is_file()
    members = json.loads((root / "ensembles" / "ensemble_AB.json").read_text())["members"]
    assert [m["weight"] for m in members] == [0.7, 0.3]
    logs = sorted((tmp_path / "logs").glob("smoke_two_stage_*.log"))
    assert len(logs) == 1 and "plan complete" in logs[0].read_text()
    again = bash("smoke_two_stage.sh", "--root", root, "--log-dir", tmp_path / "logs")
    assert again.returncode == 0 and "nothing to do: every stage finished earlier" in again.stdout
    assert "→" not in again.stdout  # no command ran
    b_log = (root / "logs" / "rn10t_B.log").read_text()
    assert b_log.count("initialized from") == 1  # Stage B from Stage A, once


def _plan(tmp_path: Path, epochs_a: int = 6) -> Path:
    plan = {
        "root": str(tmp_path / "root"),
        "stages": [
            {"name": "data", "kind": "demo_data"},
            {"name": "demo", "kind": "manifest", "dedup_exact": "drop", "dedup_near": "off",
             "sources": ["fer2013:demo_lowres={root}/data/lowres", "fer2013:demo_hires={root}/data/hires"]},
            {"name": "A", "kind": "teacher", "manifest": "demo", "config": str(CONFIGS / "demo_teacher_stageA.yaml"),
             "options": {"epochs": epochs_a, "img_size": 32, "include_sources": ["demo_lowres"]}},
            {"name": "B", "kind": "teacher", "manifest": "demo", "init_from": "A",
             "config": str(CONFIGS / "demo_teacher_stageA.yaml"),
             "options": {"stage": "B", "epochs": 1, "img_size": 32, "exclude_sources": ["demo_hires"]}},
        ],
    }  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _pipeline_in_teacher_a(plan: Path, history: Path, **popen) -> subprocess.Popen:
    """`fertrain pipeline run PLAN` in the background, returned once teacher stage A has written two epochs."""
    proc = subprocess.Popen([sys.executable, "-m", "fertrain", "pipeline", "run", str(plan)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not (history.is_file() and len(json.loads(history.read_text())) >= 2):
        time.sleep(0.5)
    assert history.is_file(), "the teacher stage never wrote an epoch"
    return proc


def test_a_killed_pipeline_resumes_the_teacher_stage_and_refuses_changed_inputs(tmp_path, capsys):
    plan = _plan(tmp_path)
    root = tmp_path / "root"
    history = root / "teachers" / "A" / "history.json"
    proc = _pipeline_in_teacher_a(plan, history)
    proc.send_signal(signal.SIGKILL)  # the whole pipeline, mid-teacher
    proc.wait()
    done_before = len(json.loads(history.read_text()))
    assert done_before < 6
    deadline = time.time() + 60  # the child got SIGTERM from the kernel: it stops at a checkpoint
    while time.time() < deadline and "running" in (root / "teachers" / "A" / "run_status.json").read_text():
        time.sleep(0.5)
    code, text = run_cli(["pipeline", "status", plan], capsys)
    assert code == 0 and "partial" in text
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 0, text
    hist = json.loads(history.read_text())
    assert [r["epoch"] for r in hist] == list(range(1, 7))  # resumed, not restarted
    steps = [r["global_step"] for r in hist]
    assert steps == sorted(steps) and len(set(steps)) == 6  # global_step continues
    assert "✓ data: finished earlier, skipped" in text and "✓ demo: finished earlier, skipped" in text
    assert "initialized from" in (root / "logs" / "B.log").read_text()
    code, text = run_cli(["pipeline", "status", plan], capsys)
    assert "6/6" in text and "done" in text
    best = torch.load(root / "teachers" / "A" / "best.pt", weights_only=True, map_location="cpu")
    rows = {r["stage"]: r for r in plan_status(load_plan(plan))}  # best.pt's metric, whichever weights it holds
    assert rows["A"]["best"] == f"macro_f1 {best['metrics']['macro_f1']:.4f}" and rows["A"]["epoch"] == "6/6"
    # a changed option of a finished stage: refused, naming it; --rerun moves the old run aside
    raw = yaml.safe_load(plan.read_text())
    raw["stages"][3]["options"]["epochs"] = 2
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 2 and "stage B finished with other inputs (its options changed" in text and "--rerun B" in text
    code, text = run_cli(["pipeline", "run", plan, "--rerun", "B"], capsys)
    assert code == 0, text
    assert len(json.loads((root / "teachers" / "B" / "history.json").read_text())) == 2
    assert len(list((root / "teachers").glob("B.replaced-*"))) == 1  # nothing deleted


def test_an_ensemble_calibrated_and_evaluated_in_a_plan_is_skipped_when_the_plan_runs_again(tmp_path, capsys):
    """Calibrating an ensemble rewrites its JSON (the temperature goes in): the ensemble stage and its
    calibration stages (one per TTA) finished with that JSON, so a second run skips them all instead of
    refusing them."""
    plan = _plan(tmp_path, epochs_a=1)
    raw = yaml.safe_load(plan.read_text())
    raw["stages"] += [
        {"name": "ens", "kind": "ensemble", "members": {"A": 1, "B": 1}},
        {"name": "cal", "kind": "calibrate", "target": "ens", "manifest": "demo", "options": {"exclude_overlap": True}},
        {"name": "cal_ten", "kind": "calibrate", "target": "ens", "manifest": "demo",
         "options": {"exclude_overlap": True, "tta": "ten"}},
        {"name": "eval", "kind": "evaluate", "target": "ens", "manifest": "demo", "split": "val",
         "options": {"tta": "ten"}, "after": ["cal"]},
        {"name": "eval_A", "kind": "evaluate", "target": "A", "manifest": "demo", "split": "val"},
        {"name": "cal_A", "kind": "calibrate", "target": "A", "manifest": "demo"},
        {"name": "cal_A_ten", "kind": "calibrate", "target": "A", "manifest": "demo", "options": {"tta": "ten"}},
    ]  # fmt: skip
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = tmp_path / "root"
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 0, text
    ens = json.loads((root / "ensembles" / "ens.json").read_text())
    assert set(ens["temperatures"]) == {"none", "ten"} and ens["temperature_tta"] == "ten"  # calibrated in place
    assert ens["temperatures"]["ten"] == ens["temperature"] != 1.0
    report = json.loads((root / "ensembles" / "ens.evaluation_demo_val_tta-ten.json").read_text())
    assert report["tta"] == "ten" and report["split"] == "val" and len(report["members"]["accuracy"]) == 2
    assert report["teacher"]["temperature"] == ens["temperature"]  # evaluated after the calibration
    single = json.loads((root / "teachers" / "A" / "evaluation_demo_val.json").read_text())
    assert single["tta"] == "none"
    calibration = json.loads((root / "teachers" / "A" / "calibration.json").read_text())
    assert calibration["tta"] == "ten" and set(calibration["temperatures"]) == {"none", "ten"}
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 0 and "nothing to do: every stage finished earlier" in text, text
    rows = {r["stage"]: r for r in plan_status(load_plan(plan))}
    assert rows["eval"]["best"] == f"acc {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}"
    assert rows["eval"]["state"] == rows["cal_ten"]["state"] == "done"


@pytest.mark.parametrize("nproc", [1, 2], ids=["one-process", "torchrun"])
def test_an_interrupted_pipeline_stops_its_stage_at_a_checkpoint_once_and_a_plain_run_resumes(tmp_path, capsys,
                                                                                              nproc):  # fmt: skip
    """Ctrl-C (SIGINT) of the pipeline reaches the running stage once, forwarded (the stage has its own
    process group): the teacher finishes its step, saves checkpoint_last.pt and ends as `interrupted`
    before the pipeline exits; a second signal would have stopped it at once, without that checkpoint.
    The pipeline starts with SIGINT ignored, as a background job of a script does: it handles it anyway.
    A stage under torchrun (`nproc_per_node: 2`) gets it through torchrun, its ranks stop at one step, and
    it counts as stopped although torchrun exits 1."""
    plan = _plan(tmp_path)
    if nproc > 1:
        raw = yaml.safe_load(plan.read_text())
        raw["stages"][2]["nproc_per_node"] = nproc
        plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    run_dir = tmp_path / "root" / "teachers" / "A"
    history = run_dir / "history.json"
    proc = _pipeline_in_teacher_a(plan, history, start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: to the pipeline's whole process group
    assert proc.wait(timeout=120) == 130
    assert json.loads((run_dir / "run_status.json").read_text())["status"] == "interrupted"  # ended before the pipeline
    log = (tmp_path / "root" / "logs" / "A.log").read_text()
    assert re.search(r"stopped after step \d+, checkpoint_last.pt saved", " ".join(log.split())), log[-2000:]
    stopped = json.loads((tmp_path / "root" / "pipeline_state.json").read_text())["A"]
    manifest = load_manifest(output_of(load_plan(plan), "demo"))
    assert stopped["state"] == "stopped" and stopped["inputs"] == {"demo": manifest.sha256}  # what A started on
    assert stopped["exit_code"] == (130 if nproc == 1 else 1)
    assert len(json.loads(history.read_text())) < 6
    code, text = run_cli(["pipeline", "run", plan, "--target", "A"], capsys)
    assert code == 0, text
    assert [r["epoch"] for r in json.loads(history.read_text())] == list(range(1, 7))  # resumed, not restarted


def test_a_softlabels_stage_under_torchrun_reads_stopped_from_the_exports_run_status(tmp_path):
    """torchrun exits 1 however its ranks ended; an export stopped by a signal records `interrupted` in
    `<out>.parts/run_status.json`, so the stage is stopped (it resumes its chunks), not failed. A status left
    by an earlier export, or a failed one, does not count."""
    stage = Stage("soft", "softlabels", {"teacher": "A", "manifest": "demo", "nproc_per_node": 2})
    root, parts = tmp_path / "root", tmp_path / "root" / "softlabels" / "soft.parquet.parts"
    parts.mkdir(parents=True)
    started = time.time() - 1
    assert ended_state(stage, root, 1, started) == "failed"  # nothing recorded
    with pytest.raises(RunInterrupted), recorded_status(parts, command="export-softlabels", started="then"):
        raise RunInterrupted("SIGINT", "3 of 9 chunks saved")
    assert read_status(parts)["status"] == "interrupted"
    assert ended_state(stage, root, 1, started) == "stopped"
    assert ended_state(stage, root, 1, time.time() + 5) == "failed"  # an earlier export's status
    assert ended_state(stage, root, 130, time.time() + 5) == "stopped"  # one process: the exit code says it
    with pytest.raises(ValueError), recorded_status(parts, command="export-softlabels", started="then"):
        raise ValueError("a corrupt checkpoint")
    assert read_status(parts)["error"] == "ValueError: a corrupt checkpoint"
    assert ended_state(stage, root, 1, started) == "failed"
    assert ended_state(stage, root, 0, started) == "done"


def test_a_stopped_stage_whose_inputs_changed_restarts_only_with_rerun(tmp_path):
    """A stage that stopped (or failed) part-way resumes on the next run when its inputs are those it started
    on. When an upstream stage made them again since, resuming would continue the run on other inputs: it is
    refused, naming the input, and `--rerun` moves the partial run aside and starts it afresh."""
    plan = load_plan(_plan(tmp_path))
    stage, partial = plan.stage("A"), tmp_path / "root" / "teachers" / "A"
    partial.mkdir(parents=True)
    (partial / "checkpoint_last.pt").write_bytes(b"a partial run")
    now = {"demo": None}  # the manifest stage has not run: no stamp
    stopped = {"A": {"state": "stopped", "exit_code": 130, "inputs": now}}
    resumed = prepare_stage(plan, stage, stopped, Stamps(), (), False, print)
    assert resumed is not None and resumed[1] == now and (partial / "checkpoint_last.pt").is_file()
    state = {"A": {"state": "failed", "exit_code": 1, "inputs": {"demo": "the manifest it started on"}}}
    with pytest.raises(FertrainError, match=r"stage A failed \(resumable\) with other inputs \(demo changed since\); "
                                            r"re-run it from the start with --rerun A"):  # fmt: skip
        prepare_stage(plan, stage, state, Stamps(), (), False, print)
    assert (partial / "checkpoint_last.pt").is_file()
    moved: list[str] = []
    assert prepare_stage(plan, stage, state, Stamps(), ("A",), False, moved.append) is not None
    assert not partial.exists() and len(moved) == 1
    (aside,) = partial.parent.glob("A.replaced-*")
    assert (aside / "checkpoint_last.pt").read_bytes() == b"a partial run"  # moved, never deleted


def test_target_runs_only_the_named_stage_and_what_it_needs(tmp_path, capsys):
    """`pipeline run --target STAGE`: the stage and its upstream stages in the plan's order, nothing else;
    a later run without it does the rest and skips what the targeted run finished."""
    plan = _plan(tmp_path, epochs_a=1)
    raw = yaml.safe_load(plan.read_text())
    raw["stages"] += [{"name": "eval_A", "kind": "evaluate", "target": "A", "manifest": "demo", "split": "val"},
                      {"name": "eval_B", "kind": "evaluate", "target": "B", "manifest": "demo", "split": "val"}]
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = tmp_path / "root"
    code, text = run_cli(["pipeline", "run", plan, "--target", "eval_A"], capsys)
    assert code == 0, text
    text = " ".join(text.split())  # the header wraps at the console's width
    assert "4 stage(s) for --target eval_A" in text and "plan complete: 4 stage(s) run" in text
    state = json.loads((root / "pipeline_state.json").read_text())
    assert list(state) == ["data", "demo", "A", "eval_A"]  # in the plan's order, B and eval_B untouched
    assert (root / "teachers" / "A" / "evaluation_demo_val.json").is_file() and not (root / "teachers" / "B").exists()
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 0 and "plan complete: 2 stage(s) run, 4 skipped" in text, text
    assert (root / "teachers" / "B" / "evaluation_demo_val.json").is_file()
    state_after = json.loads((root / "pipeline_state.json").read_text())
    code, text = run_cli(["pipeline", "run", plan, "--target", "eval_C"], capsys)
    assert code == 2 and "--target eval_C: not a stage of" in text and str(plan) in "".join(text.split())
    # a --rerun the --target selection leaves out would do nothing: refused before any stage runs
    code, text = run_cli(["pipeline", "run", plan, "--target", "eval_A", "--rerun", "B"], capsys)
    expected = "--rerun B: not among the stages --target eval_A runs; add --target B"
    assert code == 2 and expected in " ".join(text.split())
    assert json.loads((root / "pipeline_state.json").read_text()) == state_after
    # bad --jobs / --gpus values are refused before any stage runs (else --rerun B would train B again)
    for flags, expected in ((["--jobs", "0"], "Invalid value for '--jobs': 0 is not in the range x>=1"),
                            (["--gpus", "0,cuda:1"], "'0,cuda:1': expected comma-separated GPU indices")):  # fmt: skip
        code, text = run_cli(["pipeline", "run", plan, "--rerun", "B", *flags], capsys)
        assert code == 2 and expected in " ".join(text.split()), text
    with pytest.raises(ConfigError, match="--jobs 0: expected 1 or more stages at once"):  # from Python too
        run_plan(load_plan(plan), jobs=0)
    assert json.loads((root / "pipeline_state.json").read_text()) == state_after


def test_a_plan_trains_fold_teachers_labels_out_of_fold_and_distills_a_student(tmp_path, capsys):
    """A softlabels stage that lists one teacher stage per fold runs `export-softlabels --out-of-fold` over
    all of them: each training face is labelled by the fold teacher that held it out, the student trains
    on that file, and a second run of the plan does nothing. Run with `--jobs 2 --gpus 0,1`: the fold
    teachers train side by side, and the export waits for both calibrations. Fold 0 has `nproc_per_node: 2`:
    it trains under torchrun on both GPUs (gloo on CPU), fold 1 beside it on the first; a finished stage
    whose number of processes changed is refused like a changed option."""
    tiny = {"epochs": 1, "img_size": 32, "include_sources": ["demo_lowres"], "folds": 2}
    raw = yaml.safe_load(_plan(tmp_path).read_text())
    teacher_config = str(CONFIGS / "demo_teacher_stageA.yaml")
    raw["stages"] = [
        *raw["stages"][:2],
        *({"name": f"fold{k}", "kind": "teacher", "manifest": "demo", "config": teacher_config,
           "options": {**tiny, "fold": k, "seed": 1337 + k}, **({"nproc_per_node": 2} if k == 0 else {})}
          for k in range(2)),
        *({"name": f"cal{k}", "kind": "calibrate", "target": f"fold{k}", "manifest": "demo",
           "options": {"tta": "flip", "exclude_overlap": True}} for k in range(2)),
        {"name": "oof", "kind": "softlabels", "teacher": ["fold1", "fold0"], "manifest": "demo",
         "options": {"out_of_fold": True, "tta": "flip"}, "after": ["cal0", "cal1"]},
        {"name": "student", "kind": "student", "manifest": "demo", "softlabels": "oof",
         "config": str(CONFIGS / "demo_student.yaml"),
         "options": {"epochs": 1, "img_size": 32, "include_sources": ["demo_lowres"], "temperature": 2}},
    ]  # fmt: skip
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    root = tmp_path / "root"
    code, text = run_cli(["pipeline", "run", plan, "--jobs", "2", "--gpus", "0,1"], capsys)
    assert code == 0, text
    state = json.loads((root / "pipeline_state.json").read_text())
    assert [state[f"fold{k}"]["gpu"] for k in range(2)] == ["0,1", "0"]  # side by side: two GPUs, then one
    assert state["fold0"]["nproc_per_node"] == 2 and "nproc_per_node" not in state["fold1"]
    assert load_checkpoint(root / "teachers" / "fold0" / "checkpoint_last.pt")["world_size"] == 2
    assert "$ torchrun --standalone --nproc-per-node 2 -m fertrain teacher" in (root / "logs" / "fold0.log").read_text()

    def when(stage: str, key: str) -> datetime:
        return datetime.strptime(state[stage][key], LOCAL_ISO)

    assert max(when(f"fold{k}", "started") for k in range(2)) < min(when(f"fold{k}", "finished") for k in range(2))
    assert when("oof", "started") >= max(when(f"cal{k}", "finished") for k in range(2))  # after its inputs only
    oof = pd.read_parquet(root / "softlabels" / "oof.parquet").set_index("row_id")
    for k in range(2):
        held = json.loads((root / "teachers" / f"fold{k}" / "heldout_rows.json").read_text())
        assert held["fold"] == k and (oof.loc[held["row_ids"], "fold"] == k).all()
    train = load_manifest(root / "manifests" / "demo.parquet").df.query("split == 'train'")
    kept = train[train["source"] == "demo_lowres"]["row_id"].astype(str)
    assert sorted(oof.index) == sorted(kept)  # every training face the teachers trained on, once
    config = yaml.safe_load((root / "students" / "student" / "config.yaml").read_text())
    assert config["softlabels"] == str(root / "softlabels" / "oof.parquet") and config["loss"]["temperature"] == 2
    assert json.loads((root / "students" / "student" / "history.json").read_text())[-1]["epoch"] == 1
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 0 and "nothing to do: every stage finished earlier" in text, text
    with pytest.raises(ConfigError, match="stage fold0: nproc_per_node 2 needs as many GPUs; --gpus 1 gives 1"):
        run_plan(load_plan(plan), gpus=("1",))
    raw["stages"][2].pop("nproc_per_node")  # one process would train with half the global batch
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    code, text = run_cli(["pipeline", "run", plan], capsys)
    assert code == 2 and "stage fold0 finished with other inputs (its options changed since)" in text, text


def test_clean_runner_refuses_a_locked_run_and_deletes_an_unlocked_one_inside_the_root_only(tmp_path):
    root = tmp_path / "outputs"
    done, busy, outside = root / "done", root / "busy", tmp_path / "elsewhere"
    for run in (done, outside):
        with open_run(run):
            (run / "config.yaml").write_text("epochs: 1\n")
    with open_run(busy):
        (busy / "config.yaml").write_text("epochs: 1\n")
        refused = bash("clean_outputs.sh", "--root", root, "--log-dir", tmp_path / "logs", busy)
        assert refused.returncode != 0 and busy.is_dir()
        assert "lock" in (refused.stdout + refused.stderr).lower()
    out = bash("clean_outputs.sh", "--root", root, "--log-dir", tmp_path / "logs", outside)
    assert out.returncode != 0 and outside.is_dir()
    ok = bash("clean_outputs.sh", "--root", root, "--log-dir", tmp_path / "logs", done)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert not done.exists() and busy.is_dir()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "m", "kind": "manifest", "sources": ["x=y"], "colour": 1}],
         r"stage m: colour: unknown key\(s\) for manifest stages"),
        ([{"name": "m", "kind": "manifest", "sources": ["x=y"]},
          {"name": "B", "kind": "teacher", "manifest": "m", "options": {"stage": "B"}}],
         r"stage B: init_from: a Stage B teacher needs init_from: a Stage A teacher stage"),
        ([{"name": "a", "kind": "teacher", "after": "b"}, {"name": "b", "kind": "teacher", "after": "a"}],
         r"stage a: is part of a cycle: a -> b -> a"),
        ([{"name": "s", "kind": "student", "manifest": "nope"}], r"stage s: refers to 'nope', which is not a stage"),
        ([{"name": "x", "kind": "bake"}], r"stages\[0\]: each stage needs a name and a kind"),
        ([{"name": "m", "kind": "manifest", "sources": ["x=y"]}, {"name": "e", "kind": "evaluate", "target": "m"}],
         r"stage e: manifest: evaluate stages need it"),
        ([{"name": "m", "kind": "manifest", "sources": ["x=y"]},
          {"name": "e", "kind": "evaluate", "target": "m", "manifest": "m"}],
         r"stage e: target: 'm' is a manifest stage; expected a teacher, student or ensemble stage"),
        ([{"name": "t", "kind": "teacher"},
          {"name": "ens", "kind": "ensemble", "members": {"t": 1}, "calibrate": True}],
         r"stage ens: calibrate: unknown key\(s\) for ensemble stages"),
        ([{"name": "f0", "kind": "teacher"}, {"name": "f1", "kind": "teacher"},
          {"name": "oof", "kind": "softlabels", "teacher": ["f0", "f1"]}],
         r"stage oof: teacher: several teachers label out of fold: list one teacher stage per fold"),
        ([{"name": "f0", "kind": "teacher"},
          {"name": "oof", "kind": "softlabels", "teacher": "f0", "options": {"out_of_fold": True}}],
         r"stage oof: options: out_of_fold: expected teacher: a list of the fold teachers' stages"),
        ([{"name": "f0", "kind": "teacher"}, {"name": "s", "kind": "student", "teacher": "f0"},
          {"name": "oof", "kind": "softlabels", "teacher": ["f0", "s"], "options": {"out_of_fold": True}}],
         r"stage oof: teacher: s: expected teacher stages trained with options: \{fold: K, folds: N\}"),
        ([{"name": "f0", "kind": "teacher"}, {"name": "f1", "kind": "teacher"},
          {"name": "s", "kind": "student", "teacher": ["f0", "f1"]}],
         r"stage s: teacher: expected one stage name \(only a softlabels stage's teacher may list several"),
        # a path under {root} naming another stage's output is an input like a reference: order checked
        ([{"name": "m", "kind": "manifest", "sources": ["fer2013:x={root}/data/lowres"]},
          {"name": "data", "kind": "demo_data"}],
         r"stage m: needs data, listed after it"),
        ([{"name": "t", "kind": "teacher", "nproc_per_node": 0}],
         r"stage t: nproc_per_node: expected a whole number of processes >= 1 \(torchrun's --nproc-per-node"),
        ([{"name": "t", "kind": "teacher"}, {"name": "c", "kind": "calibrate", "target": "t", "nproc_per_node": 2}],
         r"stage c: nproc_per_node: unknown key\(s\) for calibrate stages"),
        ([{"name": "f0", "kind": "teacher"}, {"name": "f1", "kind": "teacher"},
          {"name": "oof", "kind": "softlabels", "teacher": ["f0", "f1"], "options": {"out_of_fold": True},
           "nproc_per_node": 2}],
         r"stage oof: nproc_per_node: an out-of-fold export runs as one process"),
    ],
)  # fmt: skip
def test_plan_errors_name_the_file_and_the_key(tmp_path, stages, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"root": "out", "stages": stages}))
    with pytest.raises(ConfigError, match=rf"{path}: {message}"):
        load_plan(path)


def test_shipped_plans_load_and_every_stage_command_parses(capsys):
    from fertrain.pipeline import argv_of

    for name in ("demo.yaml", "two_stage_overnight.yaml", "fer2013_generations.yaml", "fer2013_cross_fit.yaml"):
        plan = load_plan(REPO / "runners" / "plans" / name)
        for variant in (plan, plan.smoke_plan()):
            for stage in variant.stages:
                code, text = run_cli([*argv_of(variant, stage), "--help"], capsys)
                assert code == 0, (name, stage.name, text)


# --- PowerShell runners: parsed, their fertrain calls checked against the CLI and their POSIX twins -----


def _ps1_tree(path: Path):
    import tree_sitter
    import tree_sitter_powershell

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    return parser.parse(path.read_bytes())


def _nodes(node, kind: str):
    if node.type == kind:
        yield node
    for child in node.children:
        yield from _nodes(child, kind)


def _ps1_calls(path: Path) -> tuple[set[tuple[str, ...]], set[str], set[str]]:
    """(fertrain subcommand paths, fertrain flags, the script's own parameters) of a .ps1, from its
    syntax tree: every assignment to $fertrainArgs and the param() block."""
    tree = _ps1_tree(path)
    commands, flags = set(), set()
    for node in _nodes(tree.root_node, "assignment_expression"):
        text = node.text.decode()
        if not text.startswith("$fertrainArgs"):
            continue
        words = re.findall(r"'([^']*)'", text)
        path_words = tuple(w for w in words if not w.startswith("-"))
        if path_words:
            commands.add(path_words)
        flags |= {w for w in words if w.startswith("--")}
    params = {c.text.decode().lstrip("$") for b in _nodes(tree.root_node, "param_block")
              for p in _nodes(b, "script_parameter") for c in p.children if c.type == "variable"}  # fmt: skip
    return commands, flags, params


def _sh_calls(path: Path) -> tuple[set[tuple[str, ...]], set[str], set[str]]:
    text = path.read_text()
    commands = {tuple(w for w in m.split() if not w.startswith(("-", '"', "$")))
                for m in re.findall(r'"\$FERTRAIN" ([a-z -]+)', text)}  # fmt: skip
    flags = {w for m in re.findall(r'"\$FERTRAIN" ([^|]*)', text) for w in m.split() if w.startswith("--")}
    flags |= {w for m in re.findall(r"(?:extra\+=|where=)\(([^)]*)\)", text) for w in m.split() if w.startswith("--")}
    options = {o for o in re.findall(r"^\s+(--[a-z-]+)\)", text, re.M)}
    return commands, flags, options


def _pascal(option: str) -> str:
    return "".join(part.capitalize() for part in option.lstrip("-").split("-"))


@pytest.mark.parametrize("name", ["overnight_two_stage", "smoke_two_stage", "clean_outputs"])
def test_powershell_runners_parse_and_call_fertrain_like_their_posix_twins(name):
    from .test_first_run import all_commands

    ps1, sh = REPO / "runners" / f"{name}.ps1", REPO / "runners" / f"{name}.sh"
    tree = _ps1_tree(ps1)
    assert not tree.root_node.has_error, f"{ps1}: syntax error"
    text = ps1.read_text()
    for required in ("param(", "$ErrorActionPreference = 'Stop'", ".SYNOPSIS", ".PARAMETER", ".EXAMPLE",
                     "Initialize-Runner", "exit "):  # fmt: skip
        assert required in text, (ps1, required)
    commands, flags, params = _ps1_calls(ps1)
    cli = {path: {o for p in cmd.params for o in p.opts} for path, cmd in all_commands()}
    assert commands and all(c in cli for c in commands), commands
    known = set().union(*(cli[c] for c in commands))
    assert flags <= known, flags - known  # every flag exists on the commands called
    sh_commands, sh_flags, sh_options = _sh_calls(sh)
    assert commands == sh_commands and flags == sh_flags, ((commands, flags), (sh_commands, sh_flags))
    # the same runner options: --log-dir <-> -LogDir (clean's run directories are positional in sh)
    assert {_pascal(o) for o in sh_options} == params - {"Runs"}, (sh_options, params)
    assert not _ps1_tree(REPO / "runners" / "_common.ps1").root_node.has_error
