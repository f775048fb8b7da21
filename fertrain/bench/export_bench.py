"""`fertrain bench export`: soft-label inference img/s, end-to-end vs model-only, in one run.

Model-only: forward passes (eval mode, no grad) on a synthetic normalized batch already on the
device. End-to-end: the same model fed by the export data path (uint8 native-size faces from
DataLoader workers, resize + normalize on the device) over the manifest rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from fertrain.bench.result import BenchResult
from fertrain.data import ManifestFaces, PreprocessSpec, face_loader
from fertrain.engine.device import autocast_for, resolve_device, synchronize
from fertrain.engine.evaluate import collect_logits
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.models import build_model, normalization_of


@dataclass
class ExportBench(BenchResult):
    images: int = 0


def bench_export(manifest: str, *, backbone: str = "resnet18", img_size: int = 224, batch_size: int = 512,
                 workers: int = 8, amp: bool = True, channels_last: bool = True, device: str = "auto",
                 max_images: int = 20000, split: str = "train") -> ExportBench:  # fmt: skip
    dev = resolve_device(device)
    model = build_model(backbone, head="arcface", head_kwargs={"s": 30.0}).to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean, std = normalization_of(model)
    spec = PreprocessSpec(img_size=img_size, mean=mean, std=std)
    m = load_manifest(manifest)
    rows = filter_rows(m.df, SourceFilter(splits=[split])).reset_index(drop=True).iloc[:max_images]
    n_batches = max(1, len(rows) // batch_size)
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with torch.no_grad():
        outs = []
        for i in range(5 + n_batches):
            if i == 5:
                synchronize(dev)
                t0 = time.perf_counter()
            with autocast_for(dev, amp):
                outs.append(model(x).float())
        torch.cat(outs[5:]).cpu()  # the export copies its logits back once per chunk
        model_only = n_batches * batch_size / (time.perf_counter() - t0)
    # the export's own loader; persistent so the timed second pass measures the steady state
    loader = face_loader(ManifestFaces(m, rows, spec), batch_size=batch_size, workers=workers, device=dev,
                         persistent=True)
    for _ in range(2):  # the second pass is timed (workers warm)
        t0 = time.perf_counter()
        logits, _, _ = collect_logits(model, loader, dev, spec, amp=amp, channels_last=channels_last)
        e2e = len(logits) / (time.perf_counter() - t0)
    seen = len(logits)
    return ExportBench(str(dev), backbone, img_size, batch_size, workers, round(model_only, 1), round(e2e, 1),
                       images=seen)  # fmt: skip
