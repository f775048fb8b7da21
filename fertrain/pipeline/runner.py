"""Run a plan: each stage one fertrain command in a child process, logged to ROOT/logs/STAGE.log.

Re-running the same plan continues: a finished stage (recorded in ROOT/pipeline_state.json with
the stamps of its inputs and its command) is skipped; an unfinished one runs its command again,
and training commands resume from their `checkpoint_last.pt` (a Stage B teacher is initialized
from Stage A only while it has no checkpoint: the teacher command itself decides). A finished
stage whose inputs changed (manifest sha, an upstream best.pt, its own options) is refused unless
named in `rerun`; its old output is then moved aside, never deleted. So is a stopped or failed one
whose inputs changed since it started: resuming it would continue one run on two inputs. A failing
stage stops the plan (stages already running side by side finish first), or with `keep_going` only
what depends on it. `targets` runs only the stages named and those they need.

Children get SIGTERM when this process dies (Linux), so a killed pipeline leaves no training
running: the child stops at a step checkpoint and releases its lock. Each child has its own process
group; a stop signal to the pipeline (Ctrl-C, SIGTERM, SIGHUP) is forwarded to each running stage
once, and the pipeline waits for them to stop at their checkpoints (a second signal stops them at
once). `jobs` > 1 runs independent stages side by side (`--jobs`), each on the least busy of `gpus`
(`--gpus`); a stage with `nproc_per_node: N` runs under torchrun on the N least busy of them, and
torchrun passes a stop signal on to its ranks, which stop together at one checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fertrain.atomic import atomic_write_json
from fertrain.calibration.per_tta import ENSEMBLE_POSTHOC_KEYS
from fertrain.console import console
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.io import read_stamp
from fertrain.pipeline.plan import TRAINING_KINDS, Plan, Stage, stage_names, substitute_root
from fertrain.runs.compare import planned_epochs, run_config, summarize_run
from fertrain.runs.report_paths import CALIBRATION_SPLIT, EVALUATION_SPLIT, HISTORY, evaluation_name, report_path
from fertrain.runs.signals import RunInterrupted, cooperative_stop, stop_requested, stop_signals
from fertrain.runs.status import STATUS_NAME, read_status
from fertrain.softlabels.io import parts_dir
from fertrain.timestamps import local_timestamp

STATE_FILE = "pipeline_state.json"


@dataclass
class StageOutcome:
    name: str
    state: str  # done | skipped (already done) | failed | blocked (an input failed) | stopped
    wall_sec: float = 0.0
    log: Path | None = None
    message: str = ""


@dataclass
class PipelineResult:
    root: Path
    outcomes: list[StageOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.state in ("done", "skipped") for o in self.outcomes)


def flags(options: dict) -> list[str]:
    """{img_size: 48, amp: true, exclude_sources: [a, b], augment: {rotate: 10}} -> CLI flags."""
    out: list[str] = []
    for key, value in (options or {}).items():
        flag = "--" + str(key).replace("_", "-")
        if key == "augment" and isinstance(value, dict):
            out += [a for k, v in value.items() for a in ("--aug", f"{k}={json.dumps(v)}")]
        elif isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            out += [a for v in value for a in (flag, str(v))]
        elif value is not None:
            out += [flag, str(value)]
    return out


def split_of(stage: Stage) -> str:
    """The split a calibrate or evaluate stage reads: its `split`, else its command's default."""
    return str(stage.spec.get("split") or {"calibrate": CALIBRATION_SPLIT, "evaluate": EVALUATION_SPLIT}[stage.kind])


def tta_of(stage: Stage) -> str:
    """The --tta of a calibrate or evaluate stage (its options' `tta`, else none): what names its report
    (evaluate) or its entry in the target's calibration (calibrate)."""
    return str((stage.spec.get("options") or {}).get("tta", "none"))


def output_of(plan: Plan, name: str) -> Path:
    stage = plan.stage(name)
    if stage.kind in ("calibrate", "evaluate"):  # reports go into the target's run directory or beside its JSON
        target = plan.stage(stage.spec["target"])
        report = "calibration.json"
        if stage.kind == "evaluate":
            manifest = output_of(plan, stage.spec["manifest"])
            report = evaluation_name(manifest, split_of(stage), tta_of(stage))
        return report_path(output_of(plan, target.name), report, ensemble=target.kind == "ensemble")
    return stage.output(plan.root)


def argv_of(plan: Plan, stage: Stage, recover_stale: bool = False) -> list[str]:
    """The fertrain command (without the program name) that runs `stage`."""
    s, out = substitute_root(stage.spec, str(plan.root)), stage.output(plan.root)
    manifest = [] if not s.get("manifest") else ["--manifest", str(output_of(plan, s["manifest"]))]
    lock = ["--recover-stale-lock"] if recover_stale else []
    if stage.kind == "demo_data":
        return ["demo-data", str(out), *(["--seed", str(s["seed"])] if "seed" in s else [])]
    if stage.kind == "manifest":
        argv = ["manifest", "build", *([s["recipe"]] if s.get("recipe") else [])]
        argv += [a for src in s.get("sources") or [] for a in ("--source", src)]
        argv += [a for k, v in (s.get("adapter_options") or {}).items() for a in ("-o", f"{k}={v}")]
        for key in ("dedup_exact", "dedup_near"):
            if s.get(key):
                argv += ["--" + key.replace("_", "-"), str(s[key])]
        return [*argv, "--out", str(out), "-q"]
    if stage.kind in TRAINING_KINDS:
        argv = [stage.kind, *manifest, "--output-dir", str(out), "-q", *lock]
        argv += ["--config", s["config"]] if s.get("config") else []
        for key, flag in (("init_from", "--init-from"), ("softlabels", "--softlabels"), ("teacher", "--teacher")):
            if s.get(key):
                argv += [flag, str(output_of(plan, s[key]))]
        return argv + flags(s.get("options") or {})
    if stage.kind == "calibrate":
        return ["calibrate", str(output_of(plan, s["target"])), *manifest, "--split", split_of(stage),
                *lock, *flags(s.get("options") or {})]  # fmt: skip
    if stage.kind == "evaluate":
        return ["evaluate", str(output_of(plan, s["target"])), *manifest, "--split", split_of(stage),
                *lock, *flags(s.get("options") or {})]  # fmt: skip
    if stage.kind == "ensemble":
        members = [a for m, w in s["members"].items() for a in ("--member", f"{output_of(plan, m)}:{w}")]
        return ["ensemble", *members, "--out", str(out)]
    if stage.kind == "softlabels":
        splits = [a for sp in s.get("splits") or ["train"] for a in ("--split", sp)]
        teachers = [a for name in stage_names(s["teacher"]) for a in ("--teacher", str(output_of(plan, name)))]
        return ["export-softlabels", *teachers, *manifest, *splits, "--out", str(out), "-q", *lock,
                *flags(s.get("options") or {})]  # fmt: skip
    raise ConfigError(f"unknown stage kind {stage.kind!r}")


class Stamps:
    """What identifies a stage's output: the sha256 of the file (its .sha256 stamp when it has one),
    or of a run directory's best.pt; None while it does not exist. Each file is hashed once per
    size and mtime: several stages read the same teacher's best.pt."""

    def __init__(self):
        self.known: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str | None:
        if path.is_dir():
            path = path / "best.pt"
        if not path.is_file():
            return None
        stamped = read_stamp(path)
        if stamped is not None:
            return stamped
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self.known:
            self.known[key] = sha256_file(path)
        return self.known[key]


def stage_stamp(plan: Plan, stage: Stage, stamp: Stamps) -> str | None:
    """What identifies what `stage` made. Calibration adds to files other stages made, on purpose:
    an ensemble is its members, weights and fusion, stamped without the temperatures `fertrain
    calibrate` writes into its JSON (as a run is its best.pt, not its calibration.json); a
    calibration is the temperature it fitted for its --tta, which the target's one calibration
    report keeps beside those of other --tta."""
    path = output_of(plan, stage.name)
    if stage.kind not in ("ensemble", "calibrate"):
        return stamp(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if stage.kind == "ensemble":
        ensemble = {k: v for k, v in data.items() if k not in ENSEMBLE_POSTHOC_KEYS}
        return hashlib.sha256(json.dumps(ensemble, sort_keys=True).encode()).hexdigest()
    tta = tta_of(stage)
    fitted = (data.get("temperatures") or {}).get(tta)
    return None if fitted is None else f"T[{tta}]={json.dumps(fitted)}"


def load_state(root: Path) -> dict:
    path = root / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FertrainError(f"{path}: not valid JSON ({exc}); move it aside to start the plan's record "
                            "afresh") from None


def run_complete(out: Path) -> bool:
    """A training run that ended normally with all its epochs (not stopped early)."""
    history = out / HISTORY
    if read_status(out).get("status") != "finished" or not history.is_file():
        return False
    return len(json.loads(history.read_text(encoding="utf-8"))) == planned_epochs(run_config(out))


def _child_setup() -> None:  # pragma: no cover - runs in the child
    # its own process group: a Ctrl-C (or `timeout -s INT`) reaches the stage once, forwarded by the
    # pipeline, not a second time from the terminal; a second signal stops a training run at once
    os.setpgid(0, 0)
    # not Linux (no libc.so.6): the child outlives a killed pipeline, as any background job would
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Running:
    """A stage whose command is running in a child process."""

    stage: Stage
    proc: subprocess.Popen
    log: Path
    log_file: IO[str]
    argv: list[str]
    inputs: dict
    gpu: str | None  # CUDA_VISIBLE_DEVICES of the stage: one GPU, or one per torchrun process
    started: float

    @property
    def gpus(self) -> list[str]:
        return self.gpu.split(",") if self.gpu else []


def prepare_stage(plan: Plan, stage: Stage, state: dict, stamp: Stamps, rerun: tuple[str, ...], recover_stale: bool,
                  echo) -> tuple[list[str], dict] | None:  # fmt: skip
    """The stage's command and input stamps, or None when it finished earlier with the same ones. A
    finished stage whose inputs or options changed is refused unless named in `rerun`; then its old
    output is moved aside. So is a stopped or failed one whose inputs changed: its partial run would
    otherwise resume on the new inputs (the trainer refuses that too); with the same inputs it resumes."""
    out = stage.output(plan.root)
    argv = argv_of(plan, stage, recover_stale)
    inputs = {i: stage_stamp(plan, plan.stage(i), stamp) for i in stage.inputs}
    record = state.get(stage.name) or {}
    before = record.get("inputs")
    if record.get("state") == "done":
        # the number of torchrun processes is an option too: -b is per process, so it sets the global batch
        options_same = record.get("argv") == argv and record.get("nproc_per_node", 1) == stage.nproc
        if before == inputs and options_same and stage_stamp(plan, stage, stamp) == record.get("output"):
            return None
        verb, what = "finished", _changed(inputs, before) or ("its output" if options_same else "its options")
    elif before is not None and before != inputs:  # stopped or failed; recorded since 2026-11-24
        verb, what = f"{record['state']} (resumable)", _changed(inputs, before)
    else:
        return argv, inputs
    if stage.name not in rerun:
        raise FertrainError(f"stage {stage.name} {verb} with other inputs ({what} changed since); re-run it from "
                            f"the start with --rerun {stage.name}, or restore them")  # fmt: skip
    if out is not None and out.exists():  # a report is rewritten in place (a calibration keeps the others)
        aside = out.with_name(f"{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        echo(f"  {stage.name}: previous output moved to {aside}")
    return argv, inputs


def _changed(inputs: dict, before: dict | None) -> str:
    """The input stages whose output stamps differ between two records, named."""
    before = before or {}
    return ", ".join(sorted(k for k in {*inputs, *before} if inputs.get(k) != before.get(k)))


def _least_busy(gpus: tuple[str, ...], running: list[_Running], n: int = 1) -> str | None:
    """The `n` GPUs of `gpus` with the fewest running stages (the first of those tied), as
    CUDA_VISIBLE_DEVICES lists them; None without `gpus`."""
    if not gpus:
        return None
    return ",".join(sorted(gpus, key=lambda g: sum(g in r.gpus for r in running))[:n])  # stable: ties keep order


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # the `torchrun` of this Python's environment


def launch_command(stage: Stage, argv: list[str]) -> list[str]:
    """How the stage's fertrain command starts: this Python, or torchrun over `nproc_per_node` processes."""
    if stage.nproc == 1:
        return [sys.executable, "-m", "fertrain", *argv]
    return [*TORCHRUN, "--standalone", "--nproc-per-node", str(stage.nproc), "-m", "fertrain", *argv]


def status_dir(stage: Stage, root: Path) -> Path | None:
    """Where the stage's command records how it ended (run_status.json), if it does."""
    out = stage.output(root)
    if stage.kind in TRAINING_KINDS:
        return out
    return parts_dir(out) if stage.kind == "softlabels" else None  # until a complete export removes it


def ended_state(stage: Stage, root: Path, code: int, started: float) -> str:
    """done, stopped (by a signal: resumable) or failed, from the exit code of a command started at `started`
    (epoch seconds). A training run that exited 0 before its last epoch was stopped, and so was a command whose
    run status, written since it started, says interrupted: torchrun exits 1 when a signal stopped its ranks."""
    if code == 0:
        return "stopped" if stage.kind in TRAINING_KINDS and not run_complete(stage.output(root)) else "done"
    if code in (129, 130, 143):  # 128 + SIGHUP, SIGINT, SIGTERM
        return "stopped"
    recorded = status_dir(stage, root)
    if recorded is None or read_status(recorded).get("status") != "interrupted":
        return "failed"
    return "stopped" if (recorded / STATUS_NAME).stat().st_mtime >= started else "failed"  # not an earlier run's


def run_plan(plan: Plan, *, targets: tuple[str, ...] = (), rerun: tuple[str, ...] = (), keep_going: bool = False,
             recover_stale: bool = False, jobs: int = 1, gpus: tuple[str, ...] = (),
             echo=console.print) -> PipelineResult:  # fmt: skip
    """Run the plan's unfinished stages in order, or with `targets` only those and the stages they need.
    With `jobs` > 1 up to that many stages whose inputs have finished run at once (in the plan's order as
    they become ready); with `gpus` each starts on the GPU that the fewest running stages use."""
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected 1 or more stages at once")
    unknown = sorted(set(rerun) - {s.name for s in plan.stages})
    if unknown:
        raise ConfigError(f"--rerun {', '.join(unknown)}: not a stage of {plan.path}")
    selected = plan.only(targets).stages if targets else plan.stages
    outside = sorted(set(rerun) - {s.name for s in selected})
    if outside:  # it would silently not run: the user asked for it, so say so before anything starts
        raise ConfigError(f"--rerun {', '.join(outside)}: not among the stages --target {', '.join(targets)} runs; "
                          f"add --target {outside[0]}")  # fmt: skip
    wide = [s for s in selected if gpus and s.nproc > len(gpus)]
    if wide:
        raise ConfigError(f"stage {wide[0].name}: nproc_per_node {wide[0].nproc} needs as many GPUs; --gpus "
                          f"{','.join(gpus)} gives {len(gpus)}")  # fmt: skip
    if targets:
        echo(f"{len(selected)} stage(s) for --target {', '.join(targets)}")
    root = plan.root
    (root / "logs").mkdir(parents=True, exist_ok=True)
    state = load_state(root)
    stamp = Stamps()
    result = PipelineResult(root)
    pending, running = list(selected), []
    bad: set[str] = set()
    ended: set[str] = set()  # finished in this run or earlier, or failed / blocked (in `bad`)
    refused: FertrainError | None = None  # raised once the stages already running have ended
    stopping = False

    def start(stage: Stage, argv: list[str], inputs: dict) -> None:
        log, gpu = root / "logs" / f"{stage.name}.log", _least_busy(gpus, running, stage.nproc)
        on = "" if gpu is None else f" [GPU {gpu}]"
        command = launch_command(stage, argv)
        shown = " ".join(["torchrun", *command[len(TORCHRUN):]] if stage.nproc > 1 else ["fertrain", *argv])
        echo(f"→ {stage.name} ({stage.kind}){on}: {shown}", soft_wrap=True, highlight=False)
        fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed when the child ends (`finish`)
        fh.write(f"\n$ {shown}   # {local_timestamp()}{on}\n")
        fh.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_child_setup if os.name == "posix" else None)  # fmt: skip
        running.append(_Running(stage, proc, log, fh, argv, inputs, gpu, time.time()))

    def finish(r: _Running, code: int) -> None:
        nonlocal stopping
        r.log_file.close()
        running.remove(r)
        ended.add(r.stage.name)
        name, wall = r.stage.name, round(time.time() - r.started, 1)
        kind = ended_state(r.stage, root, code, r.started)
        record = {"wall_sec": wall, "log": str(r.log), "started": local_timestamp(r.started),
                  **({"gpu": r.gpu} if r.gpu else {}),
                  **({"nproc_per_node": r.stage.nproc} if r.stage.nproc > 1 else {})}  # fmt: skip
        if kind != "done":
            bad.add(name)
            state[name] = {"state": kind, "exit_code": code, "inputs": r.inputs, **record}
            atomic_write_json(root / STATE_FILE, state)
            result.outcomes.append(StageOutcome(name, kind, wall, r.log, f"exit {code}"))
            echo(f"✗ {name}: {kind} (exit {code}) after {wall:.0f} s; log: {r.log}", soft_wrap=True)
            stopping = stopping or not keep_going
            return
        state[name] = {"state": "done", "argv": r.argv, "inputs": r.inputs, "output": stage_stamp(plan, r.stage, stamp),
                       **record, "finished": local_timestamp()}  # fmt: skip
        atomic_write_json(root / STATE_FILE, state)
        result.outcomes.append(StageOutcome(name, "done", wall, r.log))
        echo(f"✓ {name}: done in {wall:.0f} s")

    asked = None  # the stop signal this pipeline got: forwarded once to each running stage
    with stop_signals(), cooperative_stop():  # handled even where SIGINT came in ignored (a background job)
        try:
            while True:
                if stop_requested() and asked is None:
                    asked, stopping = stop_requested(), True
                    for r in running:  # each stops at a step checkpoint; the pipeline waits for them
                        r.proc.send_signal(getattr(signal, asked))
                while not stopping and len(running) < jobs:
                    stage = next((s for s in pending if all(i in ended for i in s.inputs)), None)
                    if stage is None:
                        break
                    pending.remove(stage)
                    blocked = [i for i in stage.inputs if i in bad]
                    if blocked:
                        bad.add(stage.name)
                        ended.add(stage.name)
                        result.outcomes.append(StageOutcome(stage.name, "blocked",
                                                            message=f"needs {', '.join(blocked)}"))  # fmt: skip
                        echo(f"- {stage.name}: not run (needs {', '.join(blocked)}, which did not finish)")
                        continue
                    try:
                        prepared = prepare_stage(plan, stage, state, stamp, rerun, recover_stale, echo)
                    except FertrainError as exc:
                        refused, stopping = exc, True  # the stages already running finish first
                        break
                    if prepared is None:
                        ended.add(stage.name)
                        result.outcomes.append(StageOutcome(stage.name, "skipped",
                                                            state[stage.name].get("wall_sec", 0.0)))  # fmt: skip
                        echo(f"✓ {stage.name}: finished earlier, skipped")
                        continue
                    start(stage, *prepared)
                if not running:
                    break
                time.sleep(0.2)
                for r in list(running):
                    code = r.proc.poll()
                    if code is not None:
                        finish(r, code)
        except RunInterrupted as exc:  # a second signal: passed on, so the stages stop at once too
            for r in running:
                r.proc.send_signal(getattr(signal, exc.signame))
            for r in running:
                r.proc.wait()
                r.log_file.close()
            raise
    if asked is not None:
        raise RunInterrupted(asked, "the running stages stopped at a checkpoint")
    if refused is not None:
        raise refused
    return result


def plan_status(plan: Plan) -> list[dict]:
    """One row per stage: state, epoch/total, best metric, wall time."""
    state = load_state(plan.root)
    rows = []
    for stage in plan.stages:
        out, record = stage.output(plan.root), state.get(stage.name, {})
        row = {"stage": stage.name, "kind": stage.kind, "state": record.get("state", "pending"), "epoch": "",
               "best": "", "wall_sec": record.get("wall_sec")}  # fmt: skip
        if stage.kind in TRAINING_KINDS and (out / HISTORY).is_file():
            run = summarize_run(out, stage.name)  # the best epoch as the trainer chose best.pt (EMA weights too)
            row["epoch"] = f"{run.epochs_done}/{run.epochs}" if run.epochs else str(run.epochs_done)
            if run.best_epoch is not None:
                row["best"] = f"{run.select_metric} {run.best_value:.4f}"
            if row["state"] == "pending":
                row["state"] = "partial (resumable)"
        report_file = output_of(plan, stage.name) if stage.kind == "evaluate" else None
        if report_file and record.get("state") == "done" and report_file.is_file():
            report = json.loads(report_file.read_text(encoding="utf-8"))
            row["best"] = f"acc {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}"
        rows.append(row)
    return rows
