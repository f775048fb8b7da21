"""`fertrain student`: distill a small model from soft labels or a frozen teacher."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fertrain.cli.options import split_list
from fertrain.console import console

HELP = """Distill a student (seeds 000/001/003/004): any timm backbone, loss ce|kd|dkd|combined|crd|rkd|mmd,
progressive unfreezing none|two-stage|two-phase|conservative|balanced|aggressive|layerwise|custom.

Offline from exported soft labels (logit losses), or online from a frozen teacher run or
ENSEMBLE.json (also feature losses). Re-running the same command resumes from checkpoint_last.pt.

Examples:

  fertrain student --manifest M.parquet --softlabels outputs/softlabels/train.parquet --loss dkd

  fertrain student --manifest M.parquet --teacher outputs/teachers/RN18_... --loss crd --backbone mobilenetv3_large_100

  fertrain student --manifest M.parquet --softlabels SL.parquet --strategy two-stage --initial-checkpoint w.pth \\
      --epochs-s1 5 --epochs-s2 20 --lr-s1 1e-3 --lr-s2 1e-4 --freeze-bn

  fertrain student --config fertrain/configs/demo_student.yaml --loss ce --output-dir outputs/students/ce
"""


def student(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of options (flags override it)."),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help="Manifest (.parquet/.csv) with its stamp."),
    softlabels: str | None = typer.Option(None, help="Offline: soft-label Parquet from export-softlabels."),
    teacher: str | None = typer.Option(None, help="Online: a teacher run directory or ENSEMBLE.json (frozen)."),
    backbone: str | None = typer.Option(None, help="Any timm model name \\[mobilenetv3_large_100]."),
    img_size: int | None = typer.Option(None, help="\\[112]"),
    epochs: int | None = typer.Option(None, help="\\[30]; two-stage: --epochs-s1 + --epochs-s2."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="\\[64]"),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Data-loading processes \\[4]."),
    device: str | None = typer.Option(None, help="auto|cpu|cuda|cuda:N \\[auto]."),
    opt: str | None = typer.Option(None, help="timm optimizer name \\[adamw]."),
    lr: float | None = typer.Option(None, help="\\[1e-3]"),
    min_lr: float | None = typer.Option(None, help="\\[1e-6]"),
    weight_decay: float | None = typer.Option(None, help="\\[0.05]"),
    clip_grad: float | None = typer.Option(None, help="Clip gradient norm \\[off]."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (fp16 + scaler on older GPUs)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last"),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the student backbone."),
    seed: int | None = typer.Option(None, help="\\[1337]"),
    strategy: str | None = typer.Option(None, help="Unfreezing strategy \\[none]."),
    epochs_s1: int | None = typer.Option(None, help="two-stage/two-phase: epochs of the head-only phase \\[5]."),
    epochs_s2: int | None = typer.Option(None, help="two-stage: fine-tuning epochs \\[20]."),
    lr_s1: float | None = typer.Option(None, help="two-stage: stage 1 LR (ReduceLROnPlateau on val AUC) \\[1e-3]."),
    lr_s2: float | None = typer.Option(None, help="two-stage: stage 2 LR (cosine) \\[1e-4]."),
    layer_decay: float | None = typer.Option(None, help="layerwise: LR factor per group below the head \\[0.5]."),
    unfreeze_schedule: str | None = typer.Option(None, help="custom: YAML list of {epoch, unfreeze, lr_mult}."),
    freeze_bn: bool | None = typer.Option(None, "--freeze-bn/--no-freeze-bn", help="Frozen blocks keep BN stats."),
    loss: str | None = typer.Option(None, help="ce|kd|dkd|combined|crd|rkd|mmd \\[dkd]."),
    temperature: float | None = typer.Option(None, "--temperature", "-T", help="KD/DKD temperature \\[4]."),
    ce_weight: float | None = typer.Option(None, help="Task-term weight \\[the loss's default]."),
    kd_weight: float | None = typer.Option(None, help="KD/combined distillation weight \\[0.5]."),
    dkd_alpha: float | None = typer.Option(None, help="DKD target-class weight \\[1]."),
    dkd_beta: float | None = typer.Option(None, help="DKD non-target weight \\[8]."),
    dkd_warmup: float | None = typer.Option(None, help="DKD linear warmup epochs \\[20]."),
    feature_weight: float | None = typer.Option(None, help="combined: feature-matching weight \\[1]."),
    crd_dim: int | None = typer.Option(None, help="CRD embedding size \\[128]."),
    crd_negatives: int | None = typer.Option(None, help="CRD negatives per sample \\[4096]."),
    crd_weight: float | None = typer.Option(None, help="CRD term weight \\[0.8]."),
    rkd_distance_weight: float | None = typer.Option(None, help="\\[25]"),
    rkd_angle_weight: float | None = typer.Option(None, help="\\[50]"),
    mmd_weight: float | None = typer.Option(None, help="\\[1]"),
    include_sources: list[str] | None = typer.Option(None, help="Only these sources (repeatable or a,b)."),
    exclude_sources: list[str] | None = typer.Option(None, help="Drop these sources."),
    clahe: bool | None = typer.Option(None, "--clahe/--no-clahe"),
    select_metric: str | None = typer.Option(None, help="best.pt by val macro_f1|auc|accuracy \\[macro_f1]."),
    output_root: str | None = typer.Option(None, help="\\[outputs/students]"),
    output_dir: str | None = typer.Option(None, help="Exact run directory (overrides the naming)."),
    resume: str | None = typer.Option(None, help="Resume from this checkpoint."),
    force: bool | None = typer.Option(None, "--force", help="Resume even if schedule-relevant config changed."),
    recover_stale_lock: bool | None = typer.Option(None, "--recover-stale-lock"),
    pretrained: bool | None = typer.Option(None, "--pretrained", help="timm hub weights (needs the hub or its cache)."),
    initial_checkpoint: str | None = typer.Option(None, help="Local weights to start from."),
    skip_onnx: bool | None = typer.Option(None, "--skip-onnx"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    overrides = {k: v for k, v in locals().items() if k not in {"config", "quiet"}}
    from fertrain.distill.config import resolve_student_config
    from fertrain.distill.trainer import train_student

    overrides["include_sources"] = split_list(include_sources)
    overrides["exclude_sources"] = split_list(exclude_sources)
    cfg = resolve_student_config(overrides, config)
    result = train_student(cfg, show_progress=not quiet)
    console.print(summary_table(result))


def summary_table(result) -> Table:
    t = Table(title=f"student run {result.output_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    b = result.best
    if "epoch" in b:
        t.add_row(f"best val {b['select_metric']}", f"{b['metric']:.4f} (epoch {b['epoch']}, stage {b['stage']}, "
                  f"acc {b['accuracy']:.4f}, AUC {b['auc']:.4f})")  # fmt: skip
    if result.test:
        t.add_row("test acc / macro-F1 / AUC", f"{result.test['accuracy']:.4f} / {result.test['macro_f1']:.4f} / "
                  f"{result.test['auc']:.4f} (n={result.test['n']:,})")  # fmt: skip
    if result.params:
        t.add_row("parameters", f"{result.params['student']:,}")
    if result.history:
        h = result.history[-1]
        t.add_row("training time", f"{h['total_sec'] / 60:.1f} min, last epoch {h['img_per_sec']:,.0f} img/s")
    if result.resumed_from_epoch is not None:
        t.add_row("resumed from epoch", str(result.resumed_from_epoch))
    t.add_row("ONNX", f"{result.onnx['path']} (parity {result.onnx['max_abs_diff']:.1e})" if result.onnx else "skipped")
    t.add_row("checkpoints", "best.pt, student_stage{k}_best.pt, student_final.pt, checkpoint_last.pt")
    return t


student.__doc__ = HELP
