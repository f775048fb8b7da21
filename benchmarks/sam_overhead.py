"""Host cost of one SAM perturbation and restore (`SharpnessAware.ascended` around no work) on a
fer_vgg's weights, without the two forward/backward passes: what SAM adds to each step besides them.

    python benchmarks/sam_overhead.py [--device cpu|cuda] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

import fertrain.models  # noqa: F401  (registers fer_vgg with timm)
from fertrain.engine.device import synchronize
from fertrain.engine.sam import SharpnessAware


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    model = timm.create_model("fer_vgg", num_classes=7).to(dev)
    model(torch.randn(8, 3, 48, 48, device=dev)).sum().backward()
    params = list(model.parameters())
    for name, sam in (("sam 0.05", SharpnessAware(0.05)), ("asam 1.0", SharpnessAware(1.0, adaptive=True))):
        for _ in range(3):
            synchronize(dev)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                with sam.ascended(params, [model]):
                    pass
            synchronize(dev)
            print(f"{name}: {(time.perf_counter() - t0) / args.steps * 1e3:.2f} ms per step "
                  f"({len(params)} parameter tensors, {dev})")  # fmt: skip


if __name__ == "__main__":
    main()
