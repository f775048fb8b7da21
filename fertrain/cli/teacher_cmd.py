"""`fertrain teacher`: Stage A/B teacher training, resume, evaluate-only."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from fertrain.cli.options import split_list
from fertrain.cli.train_options import COMMON, QUIET, opt, with_options
from fertrain.console import console

HELP = """Train a Stage A or Stage B teacher: any timm backbone, ArcFace head (plain-logits warmup,
then a margin ramp) or linear head, warmup + cosine LR, evaluation and temperature scaling
every epoch, optional model EMA, ONNX export at the end.

Stage A trains at 224 px on every source; Stage B at 384 px without the 48x48 FERPlus faces,
initialized from Stage A with --init-from. Re-running the same command on an existing run
directory resumes it from checkpoint_last.pt; a changed data, model, loss or schedule option
is refused (--force records the override).

Examples:

  fertrain teacher --stage A --manifest outputs/manifests/classification_manifest.parquet --backbone resnet18

  fertrain teacher --stage B --manifest M.parquet --init-from outputs/teachers/RN18_resnet18_seed1337_stageA_img224

  fertrain teacher --config fertrain/configs/demo_teacher_stageA.yaml --manifest M.parquet --epochs 5 --device cpu

  fertrain teacher --evaluate-only --output-dir RUN --eval-manifest M.parquet --eval-split test
"""

TEACHER: dict = {
    "stage": opt(str, "--stage", help="A (default img 224, all sources) or B (img 384, no ferplus)."),
    "head": opt(str, "--head", help="arcface|linear \\[arcface]."),
    "lr_warmup_epochs": opt(float, "--lr-warmup-epochs", "--warmup-epochs", help="Linear LR warmup \\[2]."),
    "arcface_s": opt(float, "--arcface-s", help="ArcFace scale \\[30]."),
    "arcface_m": opt(float, "--arcface-m", help="ArcFace margin \\[0.35]."),
    "plain_logits_warmup_epochs": opt(float, "--plain-logits-warmup-epochs", help="Epochs without margin \\[5]."),
    "margin_ramp_start": opt(float, "--margin-ramp-start", help="Epoch the margin starts rising \\[5]."),
    "margin_ramp_end": opt(float, "--margin-ramp-end", help="Epoch it reaches --arcface-m \\[15]."),
    "smoothing": opt(float, "--smoothing", help="Label smoothing \\[0]."),
    "class_weights": opt(str, "--class-weights", help="none|inverse|effective \\[none]."),
    "init_from": opt(str, "--init-from", help="New run from another run's weights (fresh optimizer)."),
    "evaluate_only": (bool, typer.Option(False, "--evaluate-only", help="Evaluate best.pt of the run and exit.")),
    "eval_manifest": opt(str, "--eval-manifest", help="Manifest for --evaluate-only \\[--manifest]."),
    "eval_split": (str, typer.Option("test", "--eval-split", help="Split for --evaluate-only.")),
}  # fmt: skip


@with_options(COMMON, TEACHER, QUIET)
def teacher(**values) -> None:
    from fertrain.export.onnx import export_onnx
    from fertrain.posthoc import evaluate_teacher
    from fertrain.teacher import output_dir_of, resolve_teacher_config, train_teacher

    config, quiet = values.pop("config"), values.pop("quiet")
    evaluate_only, eval_manifest, eval_split = (values.pop(k) for k in ("evaluate_only", "eval_manifest",
                                                                         "eval_split"))  # fmt: skip
    for key in ("include_sources", "exclude_sources"):
        values[key] = split_list(values[key])
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
    if result.complete and not cfg.skip_onnx:
        result.onnx = export_onnx(result.output_dir)
    console.print(summary_table(result))


def summary_table(result) -> Table:
    """One screen at the end of a run: best and last metrics, calibration, speed, artifacts."""
    h = result.history
    t = Table(title=f"teacher run {result.output_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    evals = [r for r in h if "val_macro_f1" in r]
    last = evals[-1] if evals else None
    b = result.best
    t.add_row("steps / epochs", f"{result.global_step:,} / {h[-1]['epoch'] if h else 0}")
    if "epoch" in b and last:
        t.add_row(f"best val {b['select_metric']}", f"{b['metric']:.4f} (epoch {b['epoch']}, acc {b['accuracy']:.4f}, "
                  f"macro-F1 {b['macro_f1']:.4f}{', EMA weights' if b.get('weights') == 'ema' else ''})")  # fmt: skip
        t.add_row("last val acc / macro-F1 / NLL", f"{last['val_accuracy']:.4f} / {last['val_macro_f1']:.4f} / "
                  f"{last['val_nll']:.4f}")  # fmt: skip
        t.add_row("temperature, ECE raw -> scaled", f"T={last['temperature']:.3f}, {last['val_ece']:.4f} -> "
                  f"{last['val_ece_scaled']:.4f}")  # fmt: skip
    if h:
        t.add_row("training time", f"{h[-1]['total_sec'] / 60:.1f} min, last epoch {h[-1]['img_per_sec']:,.0f} img/s")
    if result.resumed_from_step is not None:
        t.add_row("resumed from step", f"{result.resumed_from_step:,}")
    t.add_row("ONNX", f"{result.onnx['path']} (parity {result.onnx['max_abs_diff']:.1e})" if result.onnx else "skipped")
    t.add_row("files", "best.pt, checkpoint_last.pt, history.json, metrics.csv, training_curves.png")
    return t


teacher.__doc__ = HELP
