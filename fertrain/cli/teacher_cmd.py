"""`fertrain teacher`: Stage A/B teacher training, resume, evaluate-only."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fertrain.cli.options import split_list
from fertrain.console import console

HELP = """Train a Stage A or Stage B teacher (seed 002): timm backbone, ArcFace head with plain-logits
warmup and margin ramp, warmup+cosine LR, evaluation + temperature scaling every epoch.

Re-running the same command on an existing run directory resumes from checkpoint_last.pt.

Examples:

  fertrain teacher --stage A --manifest outputs/manifests/classification_manifest.parquet --backbone resnet18

  fertrain teacher --stage B --manifest M.parquet --init-from outputs/teachers/RN18_resnet18_seed1337_stageA_img224

  fertrain teacher --config configs/teacher_demo.yaml --epochs 5 --device cpu

  fertrain teacher --evaluate-only --output-dir RUN --eval-manifest M.parquet --eval-split test
"""


def teacher(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of options (flags override it)."),
    manifest: str | None = typer.Option(None, "--manifest", "-m", help="Manifest (.parquet/.csv) with its stamp."),
    stage: str | None = typer.Option(None, help="A (default img 224, all sources) or B (img 384, no ferplus)."),
    backbone: str | None = typer.Option(None, help="Any timm model name \\[resnet18]."),
    head: str | None = typer.Option(None, help="arcface|linear \\[arcface]."),
    img_size: int | None = typer.Option(None, help="Input size \\[stage preset]."),
    epochs: int | None = typer.Option(None, help="\\[60]"),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="\\[64]"),
    grad_accum_steps: int | None = typer.Option(None, help="\\[1]"),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Data-loading processes \\[4]."),
    device: str | None = typer.Option(None, help="auto|cpu|cuda|cuda:N \\[auto]."),
    lr: float | None = typer.Option(None, help="\\[3e-4]"),
    min_lr: float | None = typer.Option(None, help="\\[1e-6]"),
    weight_decay: float | None = typer.Option(None, help="\\[0.05]"),
    lr_warmup_epochs: float | None = typer.Option(None, help="Linear LR warmup \\[2]."),
    clip_grad: float | None = typer.Option(None, help="Clip gradient norm \\[off]."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (fp16 + scaler on older GPUs)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last"),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    fused_augment: bool | None = typer.Option(None, "--fused-augment/--no-fused-augment",
                                              help="torch.compile the augmentation on CUDA \\[on]."),
    seed: int | None = typer.Option(None, help="\\[1337]"),
    arcface_s: float | None = typer.Option(None, help="\\[30]"),
    arcface_m: float | None = typer.Option(None, help="\\[0.35]"),
    plain_logits_warmup_epochs: float | None = typer.Option(None, help="Epochs without margin \\[5]."),
    margin_ramp_start: float | None = typer.Option(None, help="\\[5]"),
    margin_ramp_end: float | None = typer.Option(None, help="\\[15]"),
    smoothing: float | None = typer.Option(None, help="Label smoothing \\[0]."),
    balanced_min_per_class: int | None = typer.Option(None, help="Oversample each class to N per epoch \\[0]."),
    class_weights: str | None = typer.Option(None, help="none|inverse|effective \\[none]."),
    include_sources: list[str] | None = typer.Option(None, help="Only these sources (repeatable or a,b)."),
    exclude_sources: list[str] | None = typer.Option(None, help="Drop these sources \\[stage B: ferplus]."),
    clahe: bool | None = typer.Option(None, "--clahe/--no-clahe", help="CLAHE clip 2.0 tile 8x8 (saved in the run)."),
    output_root: str | None = typer.Option(None, help="\\[outputs/teachers]"),
    output_dir: str | None = typer.Option(None, help="Exact run directory (overrides the naming)."),
    eval_every: int | None = typer.Option(None, help="\\[1]"),
    checkpoint_every_steps: int | None = typer.Option(None, help="Also checkpoint every N steps \\[0: epochs only]."),
    resume: str | None = typer.Option(None, help="Resume from this checkpoint."),
    init_from: str | None = typer.Option(None, help="New run from another run's weights (fresh optimizer)."),
    force: bool | None = typer.Option(None, "--force", help="Resume even if schedule-relevant config changed."),
    recover_stale_lock: bool | None = typer.Option(None, "--recover-stale-lock"),
    pretrained: bool | None = typer.Option(None, "--pretrained", help="timm hub weights (needs the hub or its cache)."),
    initial_checkpoint: str | None = typer.Option(None, help="Local weights to start from."),
    skip_onnx: bool | None = typer.Option(None, "--skip-onnx"),
    evaluate_only: bool = typer.Option(False, "--evaluate-only", help="Evaluate best.pt of --output-dir and exit."),
    eval_manifest: str | None = typer.Option(None, help="Manifest for --evaluate-only \\[--manifest]."),
    eval_split: str = typer.Option("test", help="Split for --evaluate-only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    overrides = {k: v for k, v in locals().items() if k not in {"config", "evaluate_only", "eval_manifest",
                                                                 "eval_split", "quiet"}}  # fmt: skip
    from fertrain.train import output_dir_of, resolve_config, train_teacher

    overrides["include_sources"] = split_list(include_sources)
    overrides["exclude_sources"] = split_list(exclude_sources)
    cfg = resolve_config(overrides, config)
    if evaluate_only:
        from fertrain.train.evaluate_run import evaluate_run

        target = eval_manifest or cfg.manifest
        if not target:
            raise typer.BadParameter("--evaluate-only needs --eval-manifest (or --manifest)")
        res = evaluate_run(output_dir_of(cfg), target, eval_split, device=cfg.device, workers=cfg.workers,
                           recover_stale=cfg.recover_stale_lock)  # fmt: skip
        console.print(json.dumps({k: res[k] for k in ("n", "accuracy", "macro_f1", "written")}, indent=2))
        return
    result = train_teacher(cfg, show_progress=not quiet)
    console.print(summary_table(result))


def summary_table(result) -> Table:
    """One screen at the end of a run: best and last metrics, calibration, speed, artifacts."""
    h = result.history
    t = Table(title=f"teacher run {result.output_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    evals = [r for r in h if "val_macro_f1" in r]
    best = max(evals, key=lambda r: r["val_macro_f1"]) if evals else None
    last = evals[-1] if evals else None
    t.add_row("steps / epochs", f"{result.global_step:,} / {h[-1]['epoch'] if h else 0}")
    if best and last:
        t.add_row("best val macro-F1",
                  f"{best['val_macro_f1']:.4f} (epoch {best['epoch']}, acc {best['val_accuracy']:.4f})")  # fmt: skip
        t.add_row("last val acc / macro-F1 / NLL", f"{last['val_accuracy']:.4f} / {last['val_macro_f1']:.4f} / "
                  f"{last['val_nll']:.4f}")  # fmt: skip
        t.add_row("temperature, ECE raw -> scaled", f"T={last['temperature']:.3f}, {last['val_ece']:.4f} -> "
                  f"{last['val_ece_scaled']:.4f}")  # fmt: skip
    if h:
        t.add_row("training time", f"{h[-1]['total_sec'] / 60:.1f} min, last epoch {h[-1]['img_per_sec']:,.0f} img/s")
    if result.resumed_from_step is not None:
        t.add_row("resumed from step", f"{result.resumed_from_step:,}")
    t.add_row("ONNX", f"{result.onnx['path']} (parity {result.onnx['max_abs_diff']:.1e})" if result.onnx else "skipped")
    t.add_row("checkpoints", "best.pt (by val macro-F1), checkpoint_last.pt")
    return t


teacher.__doc__ = HELP
