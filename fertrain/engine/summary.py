"""One screen at the end of a training run: best and last metrics, calibration, test, speed, files."""

from __future__ import annotations

from rich.table import Table

from fertrain.engine.trainer import TrainResult


def summary_table(result: TrainResult, kind: str = "run") -> Table:
    h, b = result.history, result.best
    t = Table(title=f"{kind} {result.output_dir}", show_header=False, title_justify="left")
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    evals = [r for r in h if "val_macro_f1" in r]
    last = evals[-1] if evals else None
    t.add_row("steps / epochs", f"{result.global_step:,} / {h[-1]['epoch'] if h else 0}"
              + ("" if result.complete else " (stopped early: re-run to continue)"))  # fmt: skip
    if "epoch" in b:
        stage = f", stage {b['stage']}" if "stage" in b else ""
        ema = ", EMA weights" if b.get("weights") == "ema" else ""
        t.add_row(f"best val {b['select_metric']}", f"{b['metric']:.4f} (epoch {b['epoch']}{stage}{ema}): acc "
                  f"{b['accuracy']:.4f}, macro-F1 {b['macro_f1']:.4f}, AUC {b['auc']:.4f}")  # fmt: skip
    if last:
        t.add_row("last val acc / macro-F1 / NLL", f"{last['val_accuracy']:.4f} / {last['val_macro_f1']:.4f} / "
                  f"{last['val_nll']:.4f}")  # fmt: skip
    if "temperature" in b:  # best.pt's own fit: what the run serves (checkpoints before it recorded none)
        t.add_row("best.pt temperature, ECE raw -> scaled", f"T={b['temperature']:.3f}, {b['ece']:.4f} -> "
                  f"{b['ece_scaled']:.4f}")  # fmt: skip
    if result.test:
        t.add_row("test acc / macro-F1 / AUC", f"{result.test['accuracy']:.4f} / {result.test['macro_f1']:.4f} / "
                  f"{result.test['auc']:.4f} (n={result.test['n']:,})")  # fmt: skip
    if result.params:
        t.add_row("parameters", f"{result.params['student']:,}")
    if h:
        t.add_row("training time", f"{h[-1]['total_sec'] / 60:.1f} min, last epoch {h[-1]['img_per_sec']:,.0f} img/s")
    if result.resumed_from_step is not None:
        t.add_row("resumed from", f"epoch {result.resumed_from_epoch}, step {result.resumed_from_step:,}")
    t.add_row("ONNX", f"{result.onnx['path']} (parity {result.onnx['max_abs_diff']:.1e})" if result.onnx else "-")
    return t
