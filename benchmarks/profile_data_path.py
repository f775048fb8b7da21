"""Where does end-to-end training time go? Times each stage of the teacher data path alone.

    python benchmarks/profile_data_path.py MANIFEST [--img-size 224] [--workers 16] [--batch-size 256]

loader: the DataLoader alone (decode + crop in workers, collate to a canvas, pin, copy);
augment: the batched device augmentation (crop + flip + resize to img-size) alone, from a
48 px canvas (FER2013) and from an img-size canvas; model+augment: that plus the training step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from fertrain.data import AugmentConfig, ManifestFaces, PreprocessSpec, augment_batch, collate_faces, step_generator
from fertrain.engine.device import autocast_for
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.models import build_model
from fertrain.teacher.losses import teacher_loss


def timed(fn, n: int, batch: int, sync) -> float:
    for _ in range(3):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return n * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    m = load_manifest(a.manifest)
    rows = filter_rows(m.df, SourceFilter(splits=["train"])).reset_index(drop=True)
    ds = ManifestFaces(m, rows, PreprocessSpec(img_size=a.img_size))
    dl = DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=a.workers, pin_memory=True,
                    drop_last=True, prefetch_factor=4, persistent_workers=True, collate_fn=collate_faces)  # fmt: skip
    it = iter(dl)
    for _ in range(5):
        next(it)
    t, n = time.perf_counter(), 0
    for _ in range(40):
        x, sizes, *_ = next(it)
        x = x.to(dev, non_blocking=True)
        n += x.shape[0]
    sync()
    print(f"loader only (canvas {x.shape[-1]}px): {n / (time.perf_counter() - t):,.0f} img/s")
    del it, dl
    s = a.img_size
    cfg = AugmentConfig()
    g = step_generator(0, 0, dev)
    for c in (48, s):
        xc = torch.randint(0, 255, (a.batch_size, 3, c, c), dtype=torch.uint8, device=dev)
        sz = torch.full((a.batch_size, 2), c, device=dev)
        for fused in (False, dev.type == "cuda"):
            rate = timed(lambda xc=xc, sz=sz, f=fused: augment_batch(xc, sz, s, cfg, (0.5,) * 3, (0.25,) * 3, g, True,
                                                                     fused=f), 30, a.batch_size, sync)  # fmt: skip
            print(f"augment only, {c}px canvas -> {s}px{' (fused)' if fused else ''}: {rate:,.0f} img/s")
    xb = torch.randint(0, 255, (a.batch_size, 3, 48, 48), dtype=torch.uint8, device=dev)
    sizes = torch.full((a.batch_size, 2), 48, device=dev)
    model = build_model("resnet18").to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, 7, (a.batch_size,), device=dev)

    def step(augment: bool) -> None:
        x = augment_batch(xb, sizes, s, cfg, (0.5,) * 3, (0.25,) * 3, g, True, fused=dev.type == "cuda") \
            if augment else xf  # fmt: skip
        with autocast_for(dev, True):
            logits = model(x, y, 0.35)
        teacher_loss(logits, y, None).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    xf = torch.randn(a.batch_size, 3, s, s, device=dev).contiguous(memory_format=torch.channels_last)
    print(f"model only: {timed(lambda: step(False), 30, a.batch_size, sync):,.0f} img/s")
    print(f"model + augment (48px uint8 on device): {timed(lambda: step(True), 30, a.batch_size, sync):,.0f} img/s")


if __name__ == "__main__":
    main()
