"""Step-based LR schedule (timm's warmup + cosine), a pure function of the optimizer step,
so a resumed run continues exactly."""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler


def build_lr_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                       min_lr: float) -> CosineLRScheduler:  # fmt: skip
    """Linear warmup from 0 over `warmup_steps`, then cosine to `min_lr` at `total_steps`."""
    warmup_steps = min(warmup_steps, max(0, total_steps - 1))
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True,
                             t_in_epochs=False)  # fmt: skip


def set_lr_for_step(scheduler: CosineLRScheduler, step: int) -> float:
    """Set the LR used by optimizer step `step` (0-based) and return it."""
    scheduler.step_update(num_updates=step + 1)
    return float(scheduler.optimizer.param_groups[0]["lr"])
