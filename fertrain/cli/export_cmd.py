"""`fertrain export onnx RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from fertrain.cli.options import at_least
from fertrain.console import console

app = typer.Typer(help="Export trained models.\n\n\b\nExamples:\n  fertrain export onnx RUN\n"
                  "  fertrain export onnx RUN --out model.onnx", no_args_is_help=True,
                  rich_markup_mode=None)  # fmt: skip


@app.command("onnx")
def onnx(
    run: Path = typer.Argument(..., help="Run directory (best.pt) or a checkpoint file."),
    out: Path | None = typer.Option(None, help="Output .onnx [RUN/model.onnx, or RUN/model.int8.onnx with --int8]."),
    tolerance: float = typer.Option(1e-3, help="Max abs logit difference allowed vs PyTorch.",
                                    callback=at_least(0, strict=True)),
    int8: bool = typer.Option(False, "--int8", help="Also write an int8 model (static QDQ, calibrated on the run's "
                              "training images), checked on its validation split."),
    int8_dynamic: bool = typer.Option(False, "--int8-dynamic", help="With --int8: dynamic (weights-only) "
                                      "quantization, no calibration."),
    calibration_images: int = typer.Option(256, "--calibration-images", help="With --int8: training images used to "
                                           "calibrate activations.", callback=at_least(1)),
    int8_tolerance: float = typer.Option(0.01, "--int8-tolerance", help="With --int8: the most validation accuracy "
                                         "int8 may lose (0.01 = 1 point); more is refused.", callback=at_least(0)),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="With --int8: rows for calibration and the "
                                         "check [the run's manifest]."),
    workers: int = typer.Option(0, "--workers", "-j", help="Data-loading processes for --int8.", callback=at_least(0)),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over the lock a crashed "
                                            "command left on the run."),
) -> None:
    """Export to ONNX (dynamic batch) with a preprocessing sidecar; check parity with onnxruntime; with \
--int8 also an int8 model whose validation accuracy is checked against fp32.

    \b
    Examples:
      fertrain export onnx outputs/teachers/RN18_resnet18_seed1337_stageA_img224
      fertrain export onnx outputs/students/RUN --int8 --calibration-images 512
    """
    from fertrain.export.onnx import export_onnx
    from fertrain.export.quantize import export_int8

    if int8_dynamic and not int8:
        raise typer.BadParameter("--int8-dynamic goes with --int8")
    if not int8:
        res = export_onnx(run, out, tolerance=tolerance, recover_stale=recover_stale_lock)
        console.print(f"[green]wrote[/] {res['path']} (+ .json); max |torch - onnxruntime| = "
                      f"{res['max_abs_diff']:.2e}", soft_wrap=True)  # fmt: skip
        return
    res = export_int8(run, out=out, dynamic=int8_dynamic, calibration_images=calibration_images,
                      tolerance=int8_tolerance, manifest=manifest, workers=workers,
                      recover_stale=recover_stale_lock)  # fmt: skip
    console.print(f"[green]wrote[/] {res['path']} (+ .json): {res['mode']}, {res['weights']} weights; accuracy on "
                  f"{res['split']} (n={res['n']:,}) fp32 {res['fp32_accuracy']:.4f} -> int8 "
                  f"{res['int8_accuracy']:.4f}, agreement {res['agreement']:.4f}, max probability change "
                  f"{res['max_prob_change']:.3f}",
                  soft_wrap=True)  # fmt: skip
