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
    out: Path | None = typer.Option(None, help="Output .onnx [RUN/model.onnx]."),
    tolerance: float = typer.Option(1e-3, help="Max abs logit difference allowed vs PyTorch.",
                                    callback=at_least(0, strict=True)),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over the lock a crashed "
                                            "command left on the run."),
) -> None:
    """Export to ONNX (dynamic batch) with a preprocessing sidecar; check parity with onnxruntime.

    \b
    Example:
      fertrain export onnx outputs/teachers/RN18_resnet18_seed1337_stageA_img224
    """
    from fertrain.export.onnx import export_onnx

    res = export_onnx(run, out, tolerance=tolerance, recover_stale=recover_stale_lock)
    console.print(f"[green]wrote[/] {res['path']} (+ .json); max |torch - onnxruntime| = {res['max_abs_diff']:.2e}",
                  soft_wrap=True)  # fmt: skip
