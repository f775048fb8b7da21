"""`fertrain predict MODEL INPUT...`: faces, labels and calibrated probabilities in photos and videos."""

from __future__ import annotations

from pathlib import Path

import typer

from fertrain.cli.options import at_least, tta_mismatch_note, tta_option
from fertrain.console import console

HELP = """Detect every face in images, folders (recursive) and videos, align it, and give its expression \
with calibrated probabilities.

MODEL is a run directory, an ENSEMBLE.json or a model.onnx with its .json sidecar (onnxruntime, CPU). The \
model's own preprocessing is applied (a grey model sees colour photos as grey). Unreadable inputs are reported \
by name and skipped; the command then exits with status 1.

\b
Examples:
  fertrain predict outputs/students/RUN photos/ --out faces.csv
  fertrain predict RUN/model.int8.onnx clip.mp4 --every 5 --annotate annotated/
  fertrain predict RUN/model.int8.onnx frame.jpg --min-face 80 --detect-scale 1.2   (a camera: 3x faster)
  fertrain predict RUN ../shared/datasets/fer2013/validation --detector none --out fer.json --topk 3
"""


def predict(
    model: Path = typer.Argument(..., help="Run directory, ENSEMBLE.json or model.onnx (+ sidecar)."),
    inputs: list[Path] = typer.Argument(..., help="Image files, folders and/or video files."),
    detector: str = typer.Option("haar", "--detector", help="haar | yunet:PATH.onnx | none (inputs are face crops)."),
    align: bool = typer.Option(True, "--align/--no-align", help="Rotate faces so the eyes are level."),
    margin: float | None = typer.Option(None, "--margin", help="Square crop margin around a face [the model's].",
                                        callback=at_least(0)),
    every: int = typer.Option(1, "--every", help="Videos: every Nth frame.", callback=at_least(1)),
    topk: int = typer.Option(0, "--topk", help="Also list the K most likely labels per face.", callback=at_least(0)),
    out: Path | None = typer.Option(None, "--out", help="Write every face as a row of a .csv or .json file."),
    annotate: Path | None = typer.Option(None, "--annotate", help="Folder for annotated copies (images, videos)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto (PyTorch models; ONNX runs on the CPU)."),
    threads: int | None = typer.Option(None, "--threads", help="Cores an ONNX model uses: batches side by side, "
                                       "one thread each [all].", callback=at_least(1)),
    min_face: int = typer.Option(24, "--min-face", help="Smallest face the detector looks for, in pixels (larger: "
                                 "faster; 80 with --detect-scale 1.2 suits a camera).", callback=at_least(8)),
    detect_size: int = typer.Option(320, "--detect-size", help="haar: search a copy this large on its long side "
                                    "(smaller: faster, misses small faces).", callback=at_least(64)),
    detect_scale: float = typer.Option(1.1, "--detect-scale", help="haar: step between searched face sizes "
                                       "(1.2: about twice as fast, misses more).", callback=at_least(1, strict=True)),
    tta: str = tta_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    from fertrain.deploy import Recognizer, predict_paths, write_rows
    from fertrain.deploy.predict import result_table

    recognizer = Recognizer(model, detector=detector, align=align, margin=margin, device=device, threads=threads,
                            min_face=min_face, detect_size=detect_size, detect_scale=detect_scale,
                            tta=tta)  # fmt: skip
    if note := tta_mismatch_note(model, recognizer.model.temperature_tta, tta):
        console.print(note, soft_wrap=True)
    report = predict_paths(recognizer, inputs, every=every, topk=topk, annotate=annotate, show_progress=not quiet)
    if not quiet:
        console.print(result_table(report.rows, recognizer.class_names))
    if out is not None:
        write_rows(report, out)
    console.print(f"{report.inputs:,} input(s), {report.frames:,} image(s)/frame(s), {len(report.rows):,} face(s)"
                  + (f"; wrote {out}" if out else "") + (f"; annotated copies in {annotate}" if annotate else ""),
                  soft_wrap=True, highlight=False)  # fmt: skip
    if report.errors:
        console.print(f"[bold red]{len(report.errors)} input(s) could not be read[/] (named above)")
        raise typer.Exit(1)


predict.__doc__ = HELP
