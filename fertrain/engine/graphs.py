"""One optimizer step captured as a CUDA graph and replayed (`--cuda-graph`).

At 112 px and below, a resnet18 step is bound by the host: launching the few hundred kernels of
augmentation, forward, backward, optimizer and EMA takes longer than the GPU needs to run them
(docs/benchmarks.md). A CUDA graph launches the whole step at once.

A graph bakes in Python values, so everything that differs between steps enters as a device
tensor read at replay time: the batch (copied into the graph's input buffers), one vector of
per-step numbers (the LRs, the EMA weight, the trainer's own values such as the mixup draw) and
the augmentation generator, one persistent generator re-seeded from (seed, step) before every
step as the eager path seeds a fresh one. What a graph does bake in (tensor shapes, and what the
trainer puts in its key, e.g. the ArcFace margin) selects the graph: a step whose key differs
from the previous step's runs the same step code eagerly; a key seen on `warmup` consecutive
steps is captured (the eager steps before it initialize what the optimizer creates lazily).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

import torch

from fertrain.console import console

CUDA_GRAPH_MODES = ("auto", "on", "off")
BATCH_TENSORS = ("images", "sizes", "labels", "soft", "index")  # the Batch fields a step reads on the device


@dataclass
class CapturedStep:
    graph: torch.cuda.CUDAGraph
    batch: object  # the Batch whose tensors the graph reads
    values: torch.Tensor
    outputs: dict[str, torch.Tensor]


class StepGraphs:
    """Runs `body(batch, values) -> {term: tensor}` for each optimizer step, from a CUDA graph
    when one is captured for the step's key, eagerly otherwise (always, when `capture` is off:
    the CPU runs the same step code, which is how the tests check it)."""

    def __init__(self, device: torch.device, *, capture: bool, warmup: int = 3, max_graphs: int = 4):
        self.device, self.capture_enabled = device, capture
        self.warmup, self.max_graphs = warmup, max_graphs
        self.generator = torch.Generator(device=device)
        self.graphs: OrderedDict[Hashable, CapturedStep] = OrderedDict()
        self.last_key: Hashable = None
        self.streak = 0
        self.pool = None  # one memory pool shared by all graphs of the run
        self.side = torch.cuda.Stream(device) if capture else None
        self.counts = {"eager": 0, "captured": 0, "replayed": 0}

    def run(self, key: Hashable, body: Callable, batch, values: list[float], seed: int,
            release_grads: Callable[[], None]) -> dict[str, torch.Tensor]:  # fmt: skip
        """One step. `seed`: the augmentation generator's seed for it; `release_grads`: sets the
        gradients to None (an eager step must not accumulate into a graph's gradient buffers)."""
        vals = torch.tensor(values, dtype=torch.float32).to(self.device, non_blocking=True)
        full_key = (key, *(tuple(getattr(batch, f).shape) for f in BATCH_TENSORS))
        self.streak = self.streak + 1 if full_key == self.last_key else 1
        self.last_key = full_key
        captured = self.graphs.get(full_key)
        if captured is None and self.capture_enabled and key is not None and self.streak > self.warmup:
            captured = self.capture(full_key, body, batch, vals, release_grads)
        if captured is None:
            return self.eager(body, batch, vals, seed, release_grads)
        self.graphs.move_to_end(full_key)
        for name in BATCH_TENSORS:
            getattr(captured.batch, name).copy_(getattr(batch, name), non_blocking=True)
        captured.values.copy_(vals, non_blocking=True)
        self.generator.manual_seed(seed)
        captured.graph.replay()
        self.counts["replayed"] += 1
        return {k: v.clone() for k, v in captured.outputs.items()}  # the next replay overwrites the outputs

    def eager(self, body: Callable, batch, vals: torch.Tensor, seed: int, release_grads: Callable[[], None],
              ) -> dict[str, torch.Tensor]:  # fmt: skip
        release_grads()
        self.generator.manual_seed(seed)
        self.counts["eager"] += 1
        if self.side is None:
            return body(batch, vals)
        # warm-up steps before a capture run on a side stream, as torch's CUDA-graph notes ask
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            terms = body(batch, vals)
        current.wait_stream(self.side)
        for t in terms.values():
            t.record_stream(current)  # read later on the current stream: not reused before that
        return terms

    def capture(self, full_key: Hashable, body: Callable, batch, vals: torch.Tensor,
                release_grads: Callable[[], None]) -> CapturedStep | None:  # fmt: skip
        """Capture the step for `full_key` (its inputs: copies of this step's batch and values);
        a failed capture turns capturing off for the run, with the reason printed."""
        static_batch = replace(batch, **{f: getattr(batch, f).clone() for f in BATCH_TENSORS})
        static_vals = vals.clone()
        release_grads()
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                outputs = body(static_batch, static_vals)
        except RuntimeError as e:
            self.capture_enabled = False
            console.print(f"[yellow]note:[/] --cuda-graph: the training step could not be captured ({e}); "
                          "training goes on without CUDA graphs", soft_wrap=True)  # fmt: skip
            release_grads()
            return None
        self.pool = graph.pool()
        captured = CapturedStep(graph, static_batch, static_vals, outputs)
        self.graphs[full_key] = captured
        if len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        self.counts["captured"] += 1
        return captured
