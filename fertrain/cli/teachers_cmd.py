"""`fertrain calibrate | ensemble | evaluate | export-softlabels`: working with trained teachers."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fertrain.cli.options import at_least, tta_mismatch_note, tta_option
from fertrain.console import console
from fertrain.runs.report_paths import CALIBRATION_SPLIT, EVALUATION_SPLIT


def calibrate(
    target: Path = typer.Argument(..., help="Run directory or ENSEMBLE.json."),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="Held-out rows [the run's manifest]."),
    split: str = typer.Option(CALIBRATION_SPLIT, help="Split to fit on (never the training split)."),
    per_class: bool = typer.Option(False, "--per-class", help="Refine T per class where it lowers validation NLL."),
    exclude_overlap: bool = typer.Option(False, "--exclude-overlap",
                                         help="Drop faces identical to training faces instead of refusing."),
    tta: str = tta_option(),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(4, "--workers", "-j", callback=at_least(0)),
    batch_size: int = typer.Option(256, "--batch-size", "-b", callback=at_least(1)),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over the lock a crashed "
                                            "command left on the run."),
) -> None:
    """Post-hoc temperature scaling: fit T on held-out logits, report ECE/MCE/Brier/NLL before and after,
    write calibration.json and a reliability-diagram PNG.

    \b
    Example:
      fertrain calibrate outputs/teachers/RN18_resnet18_seed1337_stageA_img224 --per-class
    """
    from fertrain.posthoc import calibrate_teacher

    r = calibrate_teacher(target, manifest, split, per_class=per_class, device=device, workers=workers,
                          batch_size=batch_size, exclude_overlap=exclude_overlap, tta=tta,
                          recover_stale=recover_stale_lock)  # fmt: skip
    if r["excluded_training_overlap"]:
        console.print(f"[yellow]excluded[/] {r['excluded_training_overlap']:,} faces identical to training faces")
    t = Table(title=f"calibration of {target} on {split} (n={r['n']:,})")
    for col in ("", "accuracy", "ECE", "MCE", "Brier", "NLL"):
        t.add_column(col, justify="right")
    for name in ("before", "after"):
        m = r[name]
        t.add_row(name, f"{m['accuracy']:.4f}", f"{m['ece']:.4f}", f"{m['mce']:.4f}", f"{m['brier']:.4f}",
                  f"{m['nll']:.4f}")  # fmt: skip
    console.print(t)
    floor, debiased = r["after"]["ece_floor"], r["after"]["ece_debiased"]
    console.print(f"ECE of a perfectly calibrated model on these {r['n']:,} faces (sampling noise alone): "
                  f"{floor['mean']:.4f} (90 % of draws {floor['p05']:.4f}-{floor['p95']:.4f}); ECE after T with that "
                  f"bias taken out: {debiased['value']:.4f} (± {debiased['sd']:.4f})")  # fmt: skip
    temp = r["temperature"]
    console.print(f"T = {temp:.4f}" if isinstance(temp, float) else f"per-class T = {[round(x, 3) for x in temp]}")
    console.print("wrote " + ", ".join(r["written"]), soft_wrap=True)


def ensemble(
    member: list[str] = typer.Option(..., "--member", help="RUN_DIR or RUN_DIR:WEIGHT (repeatable)."),
    out: Path = typer.Option(..., "--out", help="ENSEMBLE.json to write."),
    fusion_t: float = typer.Option(1.0, help="Fusion temperature applied to the fused probabilities.",
                                   callback=at_least(0, strict=True)),
    search_weights: bool = typer.Option(False, "--search-weights", help="Search the weight simplex on --split."),
    objective: str = typer.Option("macro_f1", help="macro_f1|nll for --search-weights."),
    step: float = typer.Option(0.05, help="Grid step of the weight search.", callback=at_least(0, strict=True, high=1)),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="Rows for --search-weights."),
    split: str = typer.Option(CALIBRATION_SPLIT),
    exclude_overlap: bool = typer.Option(False, "--exclude-overlap", help="--search-weights: drop rows that are "
                                         "members' training faces instead of refusing."),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(4, "--workers", "-j", callback=at_least(0)),
) -> None:
    """Weighted probability fusion of teachers (each member's calibrated T first).

    \b
    Example:
      fertrain ensemble --member runs/RN18:0.7 --member runs/B3:0.3 --out outputs/ensembles/rn18_b3.json
    """
    from fertrain.ensemble.search import build_ensemble

    r = build_ensemble(member, out, fusion_t=fusion_t, search=search_weights, objective=objective, step=step,
                       manifest=manifest, split=split, device=device, workers=workers,
                       exclude_overlap=exclude_overlap)  # fmt: skip
    if r.get("excluded"):
        console.print(f"excluded {r['excluded']:,} faces identical to training faces")
    console.print(f"[green]wrote[/] {out}: weights {', '.join(f'{w:.3f}' for w in r['weights'])}"
                  + (f" ({objective} {r['best_score']:.4f} over {r['searched']} candidates)" if search_weights else ""),
                  soft_wrap=True)  # fmt: skip


def evaluate(
    target: Path = typer.Argument(..., help="Run directory or ENSEMBLE.json."),
    manifest: Path = typer.Option(..., "--manifest", "-m"),
    split: str = typer.Option(EVALUATION_SPLIT),
    tta: str = tta_option(),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(4, "--workers", "-j", callback=at_least(0)),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over the lock a crashed "
                                            "command left on the run."),
) -> None:
    """Accuracy, macro-F1, per-class metrics, confusion matrix and calibration on a manifest split;
    for an ENSEMBLE.json also each member's accuracy and how often the members agree.

    \b
    Example:
      fertrain evaluate outputs/ensembles/rn18_b3.json --manifest outputs/manifests/eval_only.parquet
    """
    from fertrain.posthoc import evaluate_teacher

    r = evaluate_teacher(target, manifest, split, device=device, workers=workers, tta=tta,
                         recover_stale=recover_stale_lock)  # fmt: skip
    scaled = r["calibration"]["scaled"]
    if note := tta_mismatch_note(target, r["temperature_tta"], tta):
        console.print(note, soft_wrap=True)
    members = {"members": r["members"]} if "members" in r else {}  # an ensemble: how its members agree
    console.print(json.dumps({**{k: r[k] for k in ("n", "accuracy", "macro_f1")}, "ece": scaled["ece"],
                              "ece_noise_floor": scaled["ece_floor"]["mean"],
                              "ece_debiased": scaled["ece_debiased"]["value"], **members, "written": r["written"]},
                             indent=2))  # fmt: skip


def export_softlabels(
    teacher: list[Path] = typer.Option(..., "--teacher", help="Run directory or ENSEMBLE.json; with --out-of-fold "
                                       "one --fold run per fold (repeat the flag)."),
    manifest: Path = typer.Option(..., "--manifest", "-m"),
    split: list[str] = typer.Option(["train"], "--split", help="Split(s) to label (repeatable)."),
    out: Path = typer.Option(..., "--out", help="softlabels.parquet"),
    out_of_fold: bool = typer.Option(False, "--out-of-fold", help="Cross-fitted: label each training row with the "
                                     "--teacher that held it out (teachers trained with --fold K --folds N)."),
    tta: str = tta_option(),
    include_logits: bool = typer.Option(False, "--include-logits", help="Also store raw logits."),
    allow_other_manifest: bool = typer.Option(False, "--allow-other-manifest", help="Label the rows of a manifest "
                                              "the teacher was not trained on (recorded in the file)."),
    chunk_size: int = typer.Option(8192, help="Rows per resumable chunk.", callback=at_least(1)),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(4, "--workers", "-j", callback=at_least(0)),
    batch_size: int = typer.Option(256, "--batch-size", "-b", callback=at_least(1)),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over the lock a crashed "
                                            "command left on the partial export."),
) -> None:
    """Calibrated teacher probabilities per manifest row, as stamped Parquet (resumable).

    \b
    Examples:
      fertrain export-softlabels --teacher outputs/ensembles/rn18_b3.json --manifest M.parquet --split train
      --out outputs/softlabels/train.parquet
      fertrain export-softlabels --out-of-fold --teacher fold0 --teacher fold1 --teacher fold2 --teacher fold3
      --teacher fold4 --manifest M.parquet --tta ten --out outputs/softlabels/oof.parquet
    """
    from fertrain.softlabels import export_out_of_fold
    from fertrain.softlabels import export_softlabels as run_export

    if out_of_fold:
        if split != ["train"] or allow_other_manifest:
            raise typer.BadParameter("--out-of-fold labels the training rows the --fold teachers held out, of the "
                                     "manifest they trained on: drop --split and --allow-other-manifest")
        export_out_of_fold(teacher, manifest, out, tta=tta, include_logits=include_logits, device=device,
                           workers=workers, batch_size=batch_size, show_progress=not quiet,
                           recover_stale=recover_stale_lock)  # fmt: skip
        return
    if len(teacher) > 1:
        raise typer.BadParameter(f"{len(teacher)} --teacher given: give one (a run or an ENSEMBLE.json), or "
                                 "--out-of-fold with one --fold run per fold")
    run_export(teacher[0], manifest, out, splits=split, tta=tta, include_logits=include_logits,
               chunk_size=chunk_size, device=device, workers=workers, batch_size=batch_size,
               show_progress=not quiet, recover_stale=recover_stale_lock,
               allow_other_manifest=allow_other_manifest)  # fmt: skip
