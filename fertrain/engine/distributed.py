"""Data-parallel training across processes started by `torchrun` (one per GPU, or gloo on CPU).

    torchrun --nproc-per-node 2 -m fertrain teacher --config fertrain/configs/fer2013_resnet18.yaml -m M.parquet

What each rank does (see `Trainer`):
- it trains on its own slice of every global batch: global batch k is the epoch order's
  positions [k*G, (k+1)*G) with G = --batch-size x world size, and rank r takes the r-th
  --batch-size of them. The epoch order is the single-process one (seed, epoch, balanced
  oversampling included), so the run sees the same samples for the same global batch, and a
  mid-epoch resume skips whole global batches exactly as one process does;
- augmentation draws are made for the whole global batch from the (seed, step) generator and
  each rank keeps its rows: the same crops, flips and jitter as one process with batch G;
- after the backward pass of each optimizer step the gradients of every optimized parameter are
  averaged across ranks (one all-reduce of a flat buffer per dtype), so every rank applies the
  same update. This is DistributedDataParallel's arithmetic without its module wrapper:
  fertrain's trainers call backbone and head separately, students change which parameters train
  when a phase unfreezes, and distillation losses own parameters of their own; averaging what
  the optimizer holds covers all three. BatchNorm running statistics are averaged at each epoch
  end (timm's `--dist-bn reduce`); batch statistics stay per rank, as in DDP without SyncBatchNorm;
- loss terms are all-reduced when they are read (every few steps), rank 0 evaluates, and the
  evaluation, best metric and the stop decision are broadcast so every rank takes the same path;
- only rank 0 holds the run lock and writes run files; the others wait until it holds the lock,
  and every rank must agree on the config and the manifest's sha256 before training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fertrain.errors import ConfigError

PER_RANK_KEYS = ("device",)  # config keys that may differ between ranks


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- collectives (no-ops for one process) ---------------------------------------------
    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Every parameter's gradient replaced by its mean over the ranks (parameters without a
        gradient on this step are skipped; all ranks have the same set)."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        for dtype in sorted({g.dtype for g in grads}, key=str):
            group = [g for g in grads if g.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            views = [v.view_as(g) for v, g in zip(flat.split([g.numel() for g in group]), group, strict=True)]
            torch._foreach_copy_(group, views)  # one multi-tensor launch, not one copy per parameter

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Floating-point buffers (BatchNorm running statistics) averaged over the ranks."""
        if not self.enabled:
            return
        for buf in module.buffers():
            if buf.dtype.is_floating_point:
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                buf /= self.world_size

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.world_size
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (the same start whatever the seed did)."""
        if self.enabled:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def check_agreement(self, config: dict, manifest_sha256: str) -> None:
        """A ConfigError on every rank when ranks were started with different options or data."""
        if not self.enabled:
            return
        mine = {k: v for k, v in config.items() if k not in PER_RANK_KEYS}
        seen = self.gather((mine, manifest_sha256))
        base = seen[0][0]
        for rank, (other, _) in enumerate(seen):
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            if diff:
                raise ConfigError(f"torchrun ranks disagree: rank {rank} has "
                                  + ", ".join(f"--{k.replace('_', '-')} {other.get(k)!r} (rank 0: "
                                              f"{base.get(k)!r})" for k in diff))  # fmt: skip
        shas = [s for _, s in seen]
        if len(set(shas)) > 1:
            raise ConfigError("torchrun ranks read different manifests: sha256 "
                              + ", ".join(f"rank {r} {s[:12]}…" for r, s in enumerate(shas)))  # fmt: skip

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = DistContext()


def from_environment() -> DistContext:
    """The rank layout torchrun (or any launcher setting RANK/WORLD_SIZE/LOCAL_RANK) gave this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def start_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up (NCCL for CUDA devices, gloo on CPU); one process: SINGLE.
    `device`: the configured device (each rank then uses its own GPU, `rank_device`)."""
    ctx = from_environment()
    if not ctx.enabled:
        return ctx
    device = rank_device(device, ctx)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device
                                if device.type == "cuda" else None)  # fmt: skip
    return ctx


def rank_device(base: torch.device, ctx: DistContext) -> torch.device:
    """Each rank's own GPU (cuda:LOCAL_RANK) when training on CUDA; CPU ranks share the CPU."""
    if not ctx.enabled or base.type != "cuda":
        return base
    if ctx.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"torchrun local rank {ctx.local_rank}: this machine has {torch.cuda.device_count()} "
                          "CUDA device(s); use --nproc-per-node <= the GPU count")  # fmt: skip
    return torch.device("cuda", ctx.local_rank)
