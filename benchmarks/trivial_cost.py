"""Where the TrivialAugment-style ops' time goes on the GPU: the fused training augmentation with and
without `trivial`, and each photometric op alone, compiled as the trainer compiles them.

    python benchmarks/trivial_cost.py [--img-size 224] [--batch 256] [--iters 50]

Prints ms per batch and the img/s each costs at that rate (faces are random grey 48x48 uint8 on three
equal planes, as FER2013's reach the device; the ops' cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import time

import torch

from fertrain.data import trivial_augment as ta
from fertrain.data.augment import AugmentConfig, augment_batch


def timed(fn, iters: int) -> float:
    """ms per call after warm-up (compilation)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    dev = torch.device("cuda")
    b, out = args.batch, args.img_size
    faces = torch.randint(0, 256, (b, 1, 48, 48), dtype=torch.uint8, device=dev).expand(-1, 3, -1, -1).contiguous()
    sizes = torch.full((b, 2), 48, dtype=torch.int32, device=dev)
    g = torch.Generator(device=dev)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    rows = []
    for trivial in (0.0, 1.0):
        cfg = AugmentConfig(trivial=trivial)

        def step(cfg=cfg):
            g.manual_seed(1)
            return augment_batch(faces, sizes, out, cfg, mean, std, g=g, fused=True)

        rows.append((f"augmentation, trivial {trivial:g}", timed(step, args.iters)))
    x = torch.rand(b, 3, out, out, device=dev)
    mag = torch.rand(b, device=dev) * 2 - 1
    view = mag.view(-1, 1, 1, 1)
    ops = {name: (lambda x, fn=fn: fn(x, view)) for name, fn in ta.PHOTOMETRIC.items()}
    ops["all six, selected"] = lambda x: ta.apply_photometric(x, torch.full((b,), 4.0, device=dev), mag)
    for name, fn in ops.items():
        compiled = torch.compile(fn, dynamic=None)
        rows.append((f"op alone: {name}", timed(lambda c=compiled: c(x), args.iters)))
    print(f"batch {b}, {out} px, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, ms in rows:
        print(f"{name:45s} {ms:8.3f} ms/batch  {b / ms * 1e3:12,.0f} img/s")


if __name__ == "__main__":
    main()
