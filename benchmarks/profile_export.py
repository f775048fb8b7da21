"""Where does soft-label inference time go? Loader alone, preprocessing alone, and a profiler
table of one end-to-end pass.

    python benchmarks/profile_export.py MANIFEST [--workers 8] [--batch-size 512] [--img-size 224]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from fertrain.data import ManifestFaces, PreprocessSpec, face_loader, to_model_input
from fertrain.engine.evaluate import collect_logits
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--img-size", type=int, default=224)
    a = ap.parse_args()
    dev = torch.device("cuda")
    m = load_manifest(a.manifest)
    rows = filter_rows(m.df, SourceFilter(splits=["train"])).reset_index(drop=True).iloc[:20000]
    spec = PreprocessSpec(img_size=a.img_size)
    dl = face_loader(ManifestFaces(m, rows, spec), batch_size=a.batch_size, workers=a.workers, device=dev,
                     persistent=True)  # the export's loader, kept warm between passes
    for _ in range(2):
        t, n = time.perf_counter(), 0
        for x, *_ in dl:
            x.to(dev, non_blocking=True)
            n += x.shape[0]
        torch.cuda.synchronize()
    print(f"loader only: {n / (time.perf_counter() - t):,.0f} img/s")
    xb = torch.randint(0, 255, (a.batch_size, 3, 48, 48), dtype=torch.uint8, device=dev)
    sz = torch.full((a.batch_size, 2), 48, device=dev)
    for label, native in (("per-face grid_sample", None), ("uniform-size interpolate", (48, 48))):
        for i in range(25):
            if i == 5:
                torch.cuda.synchronize()
                t = time.perf_counter()
            to_model_input(xb, sz, a.img_size, spec.mean, spec.std, True, dtype=torch.bfloat16, native=native)
        torch.cuda.synchronize()
        print(f"preprocess only (48 -> {a.img_size}, fused, {label}): "
              f"{20 * a.batch_size / (time.perf_counter() - t):,.0f} img/s")  # fmt: skip
    model = build_model("resnet18").to(dev).eval().to(memory_format=torch.channels_last)
    collect_logits(model, dl, dev, spec, amp=True, channels_last=True)  # warm
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        lg, _, _ = collect_logits(model, dl, dev, spec, amp=True, channels_last=True)
        dt = time.perf_counter() - t
    print(f"end-to-end under the profiler: {len(lg) / dt:,.0f} img/s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=50))


if __name__ == "__main__":
    main()
