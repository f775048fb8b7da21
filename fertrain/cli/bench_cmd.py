"""`fertrain bench train`, `export`, `latency` and `detect`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fertrain.cli.options import at_least
from fertrain.console import console

app = typer.Typer(help="Throughput benchmarks: end-to-end img/s against the model-only ceiling.\n\n\b\nExamples:\n"
                  "  fertrain bench train --manifest M.parquet --backbone resnet18 --img-size 224\n"
                  "  fertrain bench export --manifest M.parquet --backbone resnet18 --img-size 112\n"
                  "  fertrain bench latency outputs/students/RUN --image photo.jpg\n"
                  "  fertrain bench detect expw.parquet --detect-size 256 --detect-size 320 --model RUN",
                  no_args_is_help=True, rich_markup_mode=None)  # fmt: skip


@app.command("train")
def train(
    manifest: str = typer.Option(..., "--manifest", "-m", help="Manifest whose train split feeds the loader."),
    config: Path = typer.Option(None, "--config", "-c", help="Teacher YAML (or a shipped config's name) whose "
                                "optimizer, EMA, mixup and augmentation the steps use (the flags below override it)."),
    backbone: str = typer.Option("resnet18"),
    img_size: int = typer.Option(224, callback=at_least(8)),
    batch_size: int = typer.Option(256, "--batch-size", "-b", callback=at_least(1)),
    steps: int = typer.Option(50, help="Timed optimizer steps (after --warmup).", callback=at_least(1)),
    warmup: int = typer.Option(15, callback=at_least(0)),
    workers: int = typer.Option(8, "--workers", "-j", callback=at_least(0)),
    amp: bool = typer.Option(True, "--amp/--no-amp"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    compile: bool = typer.Option(False, "--compile/--no-compile"),
    clahe: bool = typer.Option(False, "--clahe/--no-clahe"),
    device: str = typer.Option("auto"),
    data_on_device: str = typer.Option("auto", help="auto|on|off: the training split held on the device, or "
                                       "fed by --workers loader processes."),
    cuda_graph: str = typer.Option("auto", help="auto|on|off: the end-to-end steps replayed as CUDA graphs, as "
                                   "training does (model-only stays the plain eager step)."),
) -> None:
    """End-to-end training img/s vs model-only img/s on synthetic tensors, and their ratio (under torchrun: of
    all ranks together, -b images each per step).

    \b
    Example:
      fertrain bench train --backbone resnet18 --img-size 224 --manifest outputs/manifests/fer2013.parquet
      fertrain bench train -c fertrain/configs/fer2013_resnet18.yaml --img-size 112 --manifest M.parquet
      torchrun --standalone --nproc-per-node 2 -m fertrain bench train --img-size 224 -b 128 --manifest M.parquet
    """
    from fertrain.bench.train_bench import bench_train

    res = bench_train(manifest, backbone=backbone, img_size=img_size, batch_size=batch_size, steps=steps,
                      warmup=warmup, workers=workers, amp=amp, channels_last=channels_last, compile=compile,
                      device=device, clahe=clahe, data_on_device=data_on_device, config=config,
                      cuda_graph=cuda_graph)  # fmt: skip
    if res.rank == 0:  # under torchrun the other ranks print nothing
        console.print(json.dumps(res.to_dict(), indent=2))
        console.print(res.summary())


@app.command("export")
def export(
    manifest: str = typer.Option(..., "--manifest", "-m", help="Manifest whose rows are run through the model."),
    backbone: str = typer.Option("resnet18"),
    img_size: int = typer.Option(224, callback=at_least(8)),
    batch_size: int = typer.Option(512, "--batch-size", "-b", callback=at_least(1)),
    workers: int = typer.Option(8, "--workers", "-j", callback=at_least(0)),
    max_images: int = typer.Option(20000, help="Rows of the split to run.", callback=at_least(1)),
    split: str = typer.Option("train"),
    amp: bool = typer.Option(True, "--amp/--no-amp"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    device: str = typer.Option("auto"),
) -> None:
    """Soft-label inference: end-to-end img/s vs model-only img/s, and their ratio.

    \b
    Example:
      fertrain bench export --backbone resnet18 --img-size 224 --manifest outputs/manifests/fer2013.parquet
    """
    from fertrain.bench.export_bench import bench_export

    res = bench_export(manifest, backbone=backbone, img_size=img_size, batch_size=batch_size, workers=workers,
                       amp=amp, channels_last=channels_last, device=device, max_images=max_images,
                       split=split)  # fmt: skip
    console.print(json.dumps(res.to_dict(), indent=2))
    console.print(res.summary())


@app.command("latency")
def latency(
    model: Path = typer.Argument(..., help="Run directory (its model.onnx and model.int8.onnx) or a .onnx file."),
    image: Path | None = typer.Option(None, "--image", help="A photo for the whole predict path (decode, detect, "
                                      "align, model)."),
    runs: int = typer.Option(200, "--runs", help="Timed calls per setting.", callback=at_least(10)),
    detector: str = typer.Option("haar", "--detector", help="haar | yunet:PATH.onnx | none."),
    detect_size: int = typer.Option(320, "--detect-size", help="haar: long side of the searched copy.",
                                    callback=at_least(64)),
    detect_scale: float = typer.Option(1.1, "--detect-scale", help="haar: step between searched face sizes.",
                                       callback=at_least(1, strict=True)),
    min_face: int = typer.Option(24, "--min-face", help="Smallest face the detector looks for, in pixels.",
                                 callback=at_least(8)),
) -> None:
    """CPU latency per face at batch 1: model alone and the whole predict path, 1 thread and all, fp32 vs int8.

    \b
    Example:
      fertrain bench latency outputs/students/RUN --image photo.jpg --min-face 80
    """
    from rich.table import Table

    from fertrain.bench.latency import bench_latency

    rows = bench_latency(model, image, runs=runs, detector=detector, detect_size=detect_size,
                         detect_scale=detect_scale, min_face=min_face)  # fmt: skip
    t = Table(title=f"latency per face, batch 1 ({model})", title_justify="left")
    for col in ("model", "threads", "model p50 ms", "model p95 ms", "predict p50 ms", "predict p95 ms", "faces"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r.model, str(r.threads), f"{r.model_p50_ms:.3f}", f"{r.model_p95_ms:.3f}",
                  "-" if r.predict_p50_ms is None else f"{r.predict_p50_ms:.2f}",
                  "-" if r.predict_p95_ms is None else f"{r.predict_p95_ms:.2f}",
                  "-" if r.faces is None else str(r.faces))  # fmt: skip
    console.print(t)
    console.print(json.dumps([r.to_dict() for r in rows]))


@app.command("detect")
def detect(
    manifest: Path = typer.Argument(..., help="Manifest of uncropped photos with a face box per row (e.g. ExpW)."),
    detect_size: list[int] = typer.Option([320], "--detect-size", help="haar: long side of the searched copy "
                                          "(repeatable: one row per size and scale).", callback=at_least(64)),
    detect_scale: list[float] = typer.Option([1.1], "--detect-scale", help="haar: step between searched face "
                                             "sizes (repeatable).", callback=at_least(1, strict=True)),
    model: Path | None = typer.Option(None, "--model", help="Also predict on detected faces and on the labelled "
                                      "boxes: run directory, ENSEMBLE.json or model.onnx."),
    split: str | None = typer.Option(None, "--split", help="Only rows of this split [all]."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N photos.", callback=at_least(1)),
    min_face: int = typer.Option(24, "--min-face", help="Smallest face the detector reports, in pixels.",
                                 callback=at_least(8)),
    no_align: bool = typer.Option(False, "--no-align", help="Do not rotate detected faces by their eyes."),
) -> None:
    """Detection recall and IoU against labelled face boxes, time per photo, and predictions on detected
    faces next to predictions on the labelled boxes.

    \b
    Example:
      fertrain manifest build --source expw=../shared/datasets/expw_mini --out expw.parquet
      fertrain bench detect expw.parquet --detect-size 256 --detect-size 320 --detect-scale 1.2 --model RUN
    """
    from rich.table import Table

    from fertrain.bench.detect import bench_detect

    rows = bench_detect(manifest, [(s, f) for s in detect_size for f in detect_scale], model=model, split=split,
                        limit=limit, min_face=min_face, align=not no_align)  # fmt: skip
    t = Table(title=f"face detection against the labelled boxes of {manifest}", title_justify="left")
    cols = ["size", "scale", "photos", "faces", "recall", "large faces", "recall large", "IoU", "det/photo",
            "ms/photo"] + (["matched", "acc detected", "acc boxes", "agreement"] if model else [])  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        values = [r.detect_size, r.detect_scale, r.photos, r.faces, r.recall, r.large_faces, r.large_recall,
                  r.mean_iou, r.detections_per_photo, r.p50_ms_per_photo]  # fmt: skip
        if model:
            values += [r.matched, r.accuracy_detected, r.accuracy_boxes, r.agreement]
        t.add_row(*[str(v) for v in values])
    console.print(t)
    console.print(json.dumps([r.to_dict() for r in rows]))
