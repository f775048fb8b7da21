"""`fertrain demo-data OUT` and `fertrain demo run` (what `make demo` calls)."""

from __future__ import annotations

from pathlib import Path

import typer

from fertrain.console import console

app = typer.Typer(help="The embedded synthetic demo: data and the end-to-end pipeline.", no_args_is_help=True)


def demo_data(
    out: Path = typer.Argument(..., help="Folder to write lowres/ and hires/ into."),
    seed: int = typer.Option(1337, help="Rendering seed (same seed, same bytes)."),
    scale: float = typer.Option(1.0, help="Multiply the number of images per class."),
) -> None:
    """Render the synthetic face-expression dataset (two sources, FER2013 folder layout).

    Example: fertrain demo-data outputs/demo/data
    """
    from fertrain.demo.dataset import write_demo_dataset

    counts = write_demo_dataset(out, seed=seed, scale=scale)
    for source, by_split in counts.items():
        console.print(f"{out / source}: {by_split}")


@app.command("run")
def run(
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Demo run directory."),
    seed: int = typer.Option(1337, help="Seed for data and splits."),
    recover_stale_lock: bool = typer.Option(False, "--recover-stale-lock", help="Take over a crashed run's lock."),
    teachers: bool = typer.Option(True, "--teachers/--no-teachers", help="Train the Stage A/B demo teachers."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the demo pipeline: data -> manifest -> Stage A/B teachers -> calibration -> ensemble -> soft labels
    -> DKD student -> ONNX.

    Example: fertrain demo run --out outputs/demo
    """
    from fertrain.cli.manifest_cmd import print_summary
    from fertrain.demo.pipeline import run_demo

    result = run_demo(out, seed=seed, recover_stale=recover_stale_lock, teachers=teachers, show_progress=not quiet)
    print_summary(result.manifest.summary)
    console.print(f"manifest {result.manifest.path} ({len(result.manifest.df):,} rows)", soft_wrap=True)
    for stage, t in result.teachers.items():
        console.print(f"teacher stage {stage}: {t.output_dir} best val macro-F1 "
                      f"{t.best.get('macro_f1', float('nan')):.3f}, acc {t.best.get('accuracy', float('nan')):.3f}",
                      soft_wrap=True)  # fmt: skip
    for stage, cal in result.calibration.items():
        console.print(f"calibrated teacher {stage}: ECE {cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}, "
                      f"NLL {cal['before']['nll']:.3f} -> {cal['after']['nll']:.3f}", soft_wrap=True)  # fmt: skip
    if result.evaluation:
        console.print(f"ensemble {result.ensemble} on test: acc {result.evaluation['accuracy']:.3f}, macro-F1 "
                      f"{result.evaluation['macro_f1']:.3f}", soft_wrap=True)  # fmt: skip
    if result.softlabels:
        console.print(f"soft labels {result.softlabels['path']} ({result.softlabels['rows']:,} rows)", soft_wrap=True)
    if result.student:
        st = result.student
        test = f", test acc {st.test['accuracy']:.3f} macro-F1 {st.test['macro_f1']:.3f}" if st.test else ""
        onnx = f", ONNX {st.onnx['path']}" if st.onnx else ""
        console.print(f"student (DKD from the soft labels): {st.output_dir} best val macro-F1 "
                      f"{st.best.get('macro_f1', float('nan')):.3f}{test}{onnx}", soft_wrap=True)  # fmt: skip
    console.print("[green]demo complete[/]")
