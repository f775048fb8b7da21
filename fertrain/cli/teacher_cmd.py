"""`fertrain teacher`: Stage A/B teacher training, resume, evaluate-only."""

from __future__ import annotations

import json

import typer

from fertrain.cli.options import split_list
from fertrain.cli.train_options import COMMON, QUIET, opt, with_options
from fertrain.console import console

HELP = """Train a teacher: any timm backbone, ArcFace head (plain-logits warmup, then a margin ramp) or linear \
head, warmup + cosine LR, evaluation and temperature scaling every epoch, optional model EMA, ONNX export at \
the end.

Stage A trains at 224 px on every source; Stage B at 384 px without the 48x48 FERPlus faces, initialized from \
Stage A with --init-from. Options come from defaults < the stage < --config YAML < flags.

Re-running the same command on an existing run directory resumes it from checkpoint_last.pt; a changed data, \
model, loss or schedule option is refused (--force records the override).

\b
Examples:
  fertrain teacher --stage A --manifest M.parquet --backbone resnet18
  fertrain teacher --stage B --manifest M.parquet --init-from outputs/teachers/RUN_A
  fertrain teacher --manifest M.parquet --img-size 112 --opt sgd --lr 0.05 --mixup 0.2 --aug rotate=10
  fertrain teacher --config fertrain/configs/demo_teacher_stageA.yaml --manifest M.parquet --epochs 5
  fertrain teacher --config fer2013_vgg --manifest M.parquet  # a shipped recipe, by name
  fertrain teacher --evaluate-only --output-dir RUN --eval-manifest M.parquet --eval-split test
"""

TEACHER: dict = {
    "stage": opt(str, "--stage", help="A (default img 224, all sources) or B (img 384, no ferplus)."),
    "head": opt(str, "--head", help="arcface|linear [arcface]."),
    "lr_warmup_epochs": opt(float, "--lr-warmup-epochs", "--warmup-epochs", help="Linear LR warmup [2]."),
    "arcface_s": opt(float, "--arcface-s",
                     help="ArcFace scale [16] (30, the face-recognition value, costs 12 points on FER2013)."),
    "arcface_m": opt(float, "--arcface-m", help="ArcFace margin [0.1] (0.35 goes with s 30)."),
    "plain_logits_warmup_epochs": opt(float, "--plain-logits-warmup-epochs", help="Epochs without margin [5]."),
    "margin_ramp_start": opt(float, "--margin-ramp-start", help="Epoch the margin starts rising [5]."),
    "margin_ramp_end": opt(float, "--margin-ramp-end", help="Epoch it reaches --arcface-m [15]."),
    "sched": opt(str, "--sched", help="cosine|step|multistep|plateau LR after the warmup [cosine]."),
    "decay_epochs": opt(float, "--decay-epochs", help="step: decay every N epochs [30]."),
    "decay_milestones": opt(str, "--decay-milestones", help="multistep: epochs, e.g. 60,120."),
    "decay_rate": opt(float, "--decay-rate", help="LR factor at each decay (step, multistep, plateau) [0.1]."),
    "patience_epochs": opt(int, "--patience-epochs", help="plateau: evaluations without gain first [10]."),
    "smoothing": opt(float, "--smoothing", help="Label smoothing [0] (inside mixup targets too)."),
    "class_weights": opt(str, "--class-weights", help="none|inverse|effective [none]."),
    "init_from": opt(str, "--init-from", help="New run from another run's weights (fresh optimizer)."),
    "evaluate_only": (bool, typer.Option(False, "--evaluate-only", help="Evaluate best.pt of the run and exit.")),
    "eval_manifest": opt(str, "--eval-manifest", help="Manifest for --evaluate-only [--manifest]."),
    "eval_split": (str, typer.Option("test", "--eval-split", help="Split for --evaluate-only.")),
}  # fmt: skip


@with_options(COMMON, TEACHER, QUIET)
def teacher(**values) -> None:
    from fertrain.engine.config import parse_key_values
    from fertrain.engine.summary import summary_table
    from fertrain.export.onnx import export_onnx
    from fertrain.posthoc import evaluate_teacher
    from fertrain.teacher import output_dir_of, resolve_teacher_config, train_teacher

    config, quiet = values.pop("config"), values.pop("quiet")
    evaluate_only, eval_manifest, eval_split = (values.pop(k) for k in ("evaluate_only", "eval_manifest",
                                                                         "eval_split"))  # fmt: skip
    for key in ("include_sources", "exclude_sources"):
        values[key] = split_list(values[key])
    values["augment"] = parse_key_values(values["augment"], "--aug", "rotate=10") or None
    cfg = resolve_teacher_config(values, config)
    if evaluate_only:
        target = eval_manifest or cfg.manifest
        if not target:
            raise typer.BadParameter("--evaluate-only needs --eval-manifest (or --manifest)")
        res = evaluate_teacher(output_dir_of(cfg), target, eval_split, device=cfg.device, workers=cfg.workers,
                               recover_stale=cfg.recover_stale_lock)  # fmt: skip
        console.print(json.dumps({k: res[k] for k in ("n", "accuracy", "macro_f1", "written")}, indent=2))
        return
    result = train_teacher(cfg, show_progress=not quiet)
    if not result.is_main:  # a torchrun rank other than 0: rank 0 exports and reports
        return
    if result.complete and not cfg.skip_onnx:
        result.onnx = export_onnx(result.output_dir)
    console.print(summary_table(result, "teacher run"))


teacher.__doc__ = HELP
