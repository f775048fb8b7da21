"""`fertrain bench train` and `fertrain bench export`."""

from __future__ import annotations

import json

import typer

from fertrain.cli.options import at_least
from fertrain.console import console

app = typer.Typer(help="Throughput benchmarks: end-to-end img/s against the model-only ceiling.\n\n\b\nExamples:\n"
                  "  fertrain bench train --manifest M.parquet --backbone resnet18 --img-size 224\n"
                  "  fertrain bench export --manifest M.parquet --backbone resnet18 --img-size 112",
                  no_args_is_help=True, rich_markup_mode=None)  # fmt: skip


@app.command("train")
def train(
    manifest: str = typer.Option(..., "--manifest", "-m", help="Manifest whose train split feeds the loader."),
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
) -> None:
    """End-to-end training img/s vs model-only img/s on synthetic tensors, and their ratio.

    \b
    Example:
      fertrain bench train --backbone resnet18 --img-size 224 --manifest outputs/manifests/fer2013.parquet
    """
    from fertrain.bench.train_bench import bench_train

    res = bench_train(manifest, backbone=backbone, img_size=img_size, batch_size=batch_size, steps=steps,
                      warmup=warmup, workers=workers, amp=amp, channels_last=channels_last, compile=compile,
                      device=device, clahe=clahe)  # fmt: skip
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
