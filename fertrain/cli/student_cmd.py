"""`fertrain student`: distill a small model from soft labels or a frozen teacher."""

from __future__ import annotations

from fertrain.cli.options import split_list
from fertrain.cli.train_options import COMMON, QUIET, opt, with_options
from fertrain.console import console

HELP = """Distill a student: any timm backbone, loss ce|kd|dkd|combined|crd|rkd|mmd, progressive unfreezing \
none|two-stage|two-phase|conservative|balanced|aggressive|layerwise|custom.

Offline from exported soft labels (logit losses), or online from a frozen teacher run or ENSEMBLE.json (also \
feature losses). Loss options go with --loss-opt KEY=VALUE (or YAML `loss: {name: dkd, beta: 8}`). Re-running \
the same command resumes from checkpoint_last.pt.

\b
Examples:
  fertrain student --manifest M.parquet --softlabels SL.parquet --loss dkd --loss-opt beta=8
  fertrain student --manifest M.parquet --teacher RUN --loss crd --loss-opt negatives=4096
  fertrain student --manifest M.parquet --teacher ENSEMBLE.json --loss kd --mixup 0.2  # teacher sees the mix
  fertrain student --manifest M.parquet --softlabels SL.parquet --strategy two-stage
      --initial-checkpoint W.pth --epochs-s1 5 --epochs-s2 20 --lr-s1 1e-3 --lr-s2 1e-4 --freeze-bn
  fertrain student --config fertrain/configs/demo_student.yaml --manifest M.parquet --loss ce
  fertrain student --config fer2013_student_vgg_ensemble --manifest M.parquet --teacher ENSEMBLE.json
  fertrain student --config fer2013_student_vgg_ensemble --manifest M.parquet --softlabels OOF.parquet -T 2
"""

STUDENT: dict = {
    "softlabels": opt(str, "--softlabels", help="Offline: soft-label Parquet from export-softlabels."),
    "teacher": opt(str, "--teacher", help="Online: a teacher run directory or ENSEMBLE.json (frozen)."),
    "label_targets": opt(str, "--label-targets", help="Soft-label Parquet whose probabilities replace the hard "
                         "labels in the labels' term of --loss ce|kd, e.g. cross-fitted ones (export-softlabels "
                         "--out-of-fold); the teacher signal stays --teacher or --softlabels [off]."),
    "head": opt(str, "--head", help="linear|arcface [linear]."),
    "loss": opt(str, "--loss", help="ce|kd|dkd|combined|crd|rkd|mmd [dkd]."),
    "loss_opt": opt(list[str], "--loss-opt", help="KEY=VALUE option of the loss (repeatable), e.g. beta=8."),
    "temperature": opt(float, "--temperature", "-T", help="Shorthand for --loss-opt temperature=T."),
    "test_split": opt(str, "--test-split", help="Split evaluated with best.pt at the end [test]."),
    "strategy": opt(str, "--strategy", help="Unfreezing strategy [none]."),
    "epochs_s1": opt(int, "--epochs-s1", help="two-stage/two-phase: epochs of the head-only phase [5]."),
    "epochs_s2": opt(int, "--epochs-s2", help="two-stage: fine-tuning epochs [20]."),
    "lr_s1": opt(float, "--lr-s1", help="two-stage: stage 1 LR (ReduceLROnPlateau on val AUC) [1e-3]."),
    "lr_s2": opt(float, "--lr-s2", help="two-stage: stage 2 LR (cosine) [1e-4]."),
    "layer_decay": opt(float, "--layer-decay", help="layerwise: LR factor per group below the head [0.5]."),
    "unfreeze_schedule": opt(str, "--unfreeze-schedule", help="custom: YAML list of {epoch, unfreeze, lr_mult}."),
    "freeze_bn": opt(bool, "--freeze-bn/--no-freeze-bn", help="Frozen blocks keep their BatchNorm statistics."),
}  # fmt: skip


@with_options(COMMON, STUDENT, QUIET)
def student(**values) -> None:
    from fertrain.engine.config import parse_key_values
    from fertrain.engine.summary import summary_table
    from fertrain.export.onnx import export_onnx
    from fertrain.student import resolve_student_config, train_student
    from fertrain.student.config import parse_loss_opts

    config, quiet = values.pop("config"), values.pop("quiet")
    for key in ("include_sources", "exclude_sources"):
        values[key] = split_list(values[key])
    values["augment"] = parse_key_values(values["augment"], "--aug", "rotate=10") or None
    loss_opts = parse_loss_opts(values.pop("loss_opt"))
    temperature = values.pop("temperature")
    if temperature is not None:
        loss_opts["temperature"] = temperature
    cfg = resolve_student_config(values, config, loss_opts)
    result = train_student(cfg, show_progress=not quiet)
    if not result.is_main:  # a torchrun rank other than 0: rank 0 exports and reports
        return
    if result.complete and not cfg.skip_onnx:
        result.onnx = export_onnx(result.output_dir)
    console.print(summary_table(result, "student run"))


student.__doc__ = HELP
