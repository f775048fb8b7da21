"""`fertrain pipeline run | status PLAN.yaml`: a resumable plan of fertrain stages under one root."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fertrain.console import console

app = typer.Typer(help="Run a plan of stages (manifest -> teachers -> calibrate -> ensemble -> soft labels -> "
                  "students -> evaluate), each a normal fertrain command writing under the plan's root; re-running "
                  "continues.\n\n\b\n"
                  "Examples:\n  fertrain pipeline run runners/plans/two_stage_overnight.yaml\n"
                  "  FERTRAIN_DATA=../shared/datasets fertrain pipeline run runners/plans/fer2013_generations.yaml\n"
                  "  fertrain pipeline run runners/plans/demo.yaml --smoke\n"
                  "  fertrain pipeline run runners/plans/fer2013_cross_fit.yaml --target eval_fres_1337\n"
                  "  fertrain pipeline status runners/plans/two_stage_overnight.yaml", no_args_is_help=True,
                  rich_markup_mode=None)  # fmt: skip


@app.command("run")
def run(
    plan_file: Path = typer.Argument(..., metavar="PLAN", help="Plan YAML (see runners/plans/)."),
    smoke: bool = typer.Option(False, "--smoke", help="The plan's smoke variant: its `smoke:` overrides (tiny "
                               "epochs and sizes) into a separate root."),
    rerun: list[str] = typer.Option([], "--rerun", help="Run this finished stage again although its inputs "
                                    "changed (its old output is moved aside; repeatable); with --target, one of the "
                                    "stages it runs."),
    keep_going: bool = typer.Option(False, "--keep-going", help="After a failed stage, run what does not need it."),
    target: list[str] = typer.Option([], "--target", help="Run only this stage and the stages it needs, in the "
                                     "plan's order (repeatable); a later run without it continues the rest."),
    root: Path | None = typer.Option(None, "--root", help="Put the stages under this folder instead of the plan's "
                                     "root (or smoke root)."),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over locks a crashed run left."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Run up to this many stages at once, each as soon as the stages "
                             "it needs have finished (fold teachers side by side; small images leave most of a GPU "
                             "idle) [1: one after another]."),
    gpus: str = typer.Option("", "--gpus", help="Comma-separated GPU indices (e.g. 0,1,2,3): each stage starts on "
                             "the one the fewest running stages use (CUDA_VISIBLE_DEVICES; a stage with "
                             "nproc_per_node: N under torchrun on N of them) [the stage's own]."),
) -> None:
    """Run every unfinished stage in order; finished ones are skipped, interrupted ones resume.

    \b
    Examples:
      fertrain pipeline run runners/plans/two_stage_overnight.yaml
      fertrain pipeline run runners/plans/demo.yaml --smoke --recover-stale-lock
      fertrain pipeline run runners/plans/fer2013_cross_fit.yaml --target eval_fres_1337 --target eval_fres_1337_ten
      fertrain pipeline run runners/plans/fer2013_cross_fit.yaml --jobs 5              # five fold teachers at once
      fertrain pipeline run runners/plans/fer2013_cross_fit.yaml --jobs 8 --gpus 0,1,2,3
    """
    from fertrain.pipeline import load_plan, run_plan

    gpu_list = tuple(g.strip() for g in gpus.split(",") if g.strip())
    if any(not g.isdigit() for g in gpu_list):
        raise typer.BadParameter(f"{gpus!r}: expected comma-separated GPU indices such as 0,1", param_hint="--gpus")
    plan = load_plan(plan_file)
    plan = plan.smoke_plan() if smoke else plan
    plan = plan.with_root(root) if root else plan
    console.print(f"plan {plan_file} -> {plan.root}{' (smoke)' if smoke else ''}", highlight=False)
    result = run_plan(plan, targets=tuple(target), rerun=tuple(rerun), keep_going=keep_going,
                      recover_stale=recover_stale_lock, jobs=jobs, gpus=gpu_list)  # fmt: skip
    ran = [o for o in result.outcomes if o.state == "done"]
    if result.ok and not ran:
        console.print("nothing to do: every stage finished earlier")
    elif result.ok:
        console.print(f"plan complete: {len(ran)} stage(s) run, {len(result.outcomes) - len(ran)} skipped")
    else:
        for o in result.outcomes:
            if o.state in ("failed", "stopped"):
                console.print(f"[bold red]stage {o.name} {o.state}[/] ({o.message}); log: {o.log}", soft_wrap=True)
        raise typer.Exit(1)


@app.command("status")
def status(
    plan_file: Path = typer.Argument(..., metavar="PLAN", help="Plan YAML."),
    smoke: bool = typer.Option(False, "--smoke", help="Status of the smoke variant's root."),
    root: Path | None = typer.Option(None, "--root", help="The folder given to `pipeline run --root`."),
) -> None:
    """Each stage: state, epoch/total, best validation metric, wall time.

    \b
    Example:
      fertrain pipeline status runners/plans/two_stage_overnight.yaml
    """
    from fertrain.pipeline import load_plan, plan_status

    plan = load_plan(plan_file)
    plan = plan.smoke_plan() if smoke else plan
    plan = plan.with_root(root) if root else plan
    t = Table(title=f"{plan_file} ({plan.root})", title_justify="left")
    t.add_column("stage", no_wrap=True)
    for col in ("kind", "state", "epoch", "best", "wall"):
        t.add_column(col, overflow="fold")
    for r in plan_status(plan):
        wall = f"{r['wall_sec'] / 60:.1f} min" if r["wall_sec"] is not None else ""
        t.add_row(r["stage"], r["kind"], r["state"], r["epoch"], r["best"], wall)
    console.print(t)
