"""`fertrain bench train`: end-to-end training img/s vs the model-only ceiling, in one run.

Both use the engine's own step code (`micro_step`, `forward_backward`, `optimizer_step` of a
teacher trainer; with `sam` in the config both take SAM's two passes): model-only feeds
synthetic normalized tensors already on the device; end-to-end feeds the real manifest through
the training data path (the split held on the device, or uint8 decode in loader workers:
--data-on-device) and the batched device augmentation. Their ratio says whether the GPU waits
for the CPU. With --cuda-graph (auto: on CUDA) the end-to-end steps are the engine's graphed
steps (`graphed_step`: the whole step replayed as one CUDA graph), as training runs them;
model-only stays the plain eager step, the ceiling the issue measures against.

Under torchrun (`torchrun --nproc-per-node N -m fertrain bench train ...`) every rank runs the
same steps on its own GPU with `-b` images, gradients averaged as in training (the engine's
`optimizer_step`), and both numbers are for all ranks together (N x -b images per step).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fertrain.bench.result import BenchResult
from fertrain.engine import Batch, resolve_device
from fertrain.engine.device import synchronize
from fertrain.engine.distributed import start_distributed
from fertrain.engine.trainer import SYNC_EVERY
from fertrain.manifests import SourceFilter
from fertrain.runs import open_run
from fertrain.teacher import TeacherTrainer, resolve_teacher_config


@dataclass
class TrainBench(BenchResult):
    steps: int = 0
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    data_on_device: bool = False
    cuda_graph: bool = False  # end-to-end steps replayed from a CUDA graph
    world_size: int = 1  # torchrun processes; img/s are for all of them together
    rank: int = 0


def bench_train(manifest: str, *, backbone: str = "resnet18", img_size: int = 224, batch_size: int = 256,
                steps: int = 50, warmup: int = 15, workers: int = 8, amp: bool = True, channels_last: bool = True,
                compile: bool = False, device: str = "auto", clahe: bool = False,
                data_on_device: str = "auto", config: str | Path | None = None,
                cuda_graph: str = "auto") -> TrainBench:  # fmt: skip
    """`config`: a teacher YAML (optimizer, EMA, mixup, augmentation); the arguments override it."""
    cfg = resolve_teacher_config({"manifest": manifest, "backbone": backbone, "img_size": img_size,
                                  "batch_size": batch_size,
                          "workers": workers, "amp": amp, "channels_last": channels_last, "compile": compile,
                          "device": device, "epochs": 1, "clahe": clahe, "skip_onnx": True,
                          "data_on_device": data_on_device, "cuda_graph": cuda_graph,
                          "plain_logits_warmup_epochs": 0, "margin_ramp_start": 0, "margin_ramp_end": 0},
                                 config)  # fmt: skip
    train_only = SourceFilter(splits=["train"])
    dist = start_distributed(resolve_device(cfg.device))
    try:
        with tempfile.TemporaryDirectory() as tmp, open_run(tmp, manifest=manifest, source_filter=train_only) as run:
            tr = TeacherTrainer(cfg, run, show_progress=False, dist=dist)
            tr.model.train()
            dev = tr.device
            tr.margin = cfg.arcface_m
            # model-only: synthetic normalized batch on the device
            x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y = torch.randint(0, 7, (batch_size,), device=dev)
            synthetic = Batch(x, None, None, y, torch.full((batch_size, 7), float("nan"), device=dev), None, 0)
            for i in range(warmup + steps):
                if i == warmup:
                    synchronize(dev)
                    t0 = time.perf_counter()
                loss = tr.forward_backward(x, synthetic)["loss"]
                tr.optimizer_step()
                if (i + 1) % SYNC_EVERY == 0:
                    float(loss)
            synchronize(dev)
            model_only = steps * batch_size / (time.perf_counter() - t0)
            del loss  # its autograd graph would outlive the step (and meet the graphed steps' side stream)
            # end-to-end: real data path, epochs chained until enough steps were taken
            done, epoch = 0, 0
            while done < warmup + steps:
                for micro, raw in enumerate(tr.train_loader(epoch, 0)):
                    if done == warmup:
                        synchronize(dev)
                        t0 = time.perf_counter()
                    if tr.step_graphs is not None:
                        tr.before_step()
                        loss = tr.graphed_step(raw)["loss"]
                    else:
                        loss = tr.micro_step(raw, micro)["loss"]
                        tr.optimizer_step()
                    done += 1
                    if done % SYNC_EVERY == 0:
                        float(loss)
                    if done == warmup + steps:
                        break
                epoch += 1
            synchronize(dev)
            e2e = steps * batch_size / (time.perf_counter() - t0)
        world = dist.world_size  # every rank stepped in lockstep (gradients averaged each step)
        return TrainBench(str(dev), backbone, img_size, batch_size, workers, round(model_only * world, 1),
                          round(e2e * world, 1), steps=steps, amp=amp, channels_last=channels_last, compile=compile,
                          data_on_device=tr.resident_train is not None, world_size=world, rank=dist.rank,
                          cuda_graph=bool(tr.step_graphs and tr.step_graphs.counts["replayed"]))  # fmt: skip
    finally:
        dist.shutdown()
