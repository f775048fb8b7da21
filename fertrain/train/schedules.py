"""Step-based schedules: the ArcFace margin ramp and the LR (timm's warmup + cosine).

Both are pure functions of the optimizer step, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler


def margin_at_step(step: int, steps_per_epoch: int, *, margin: float, plain_warmup_epochs: float,
                   ramp_start_epoch: float, ramp_end_epoch: float) -> float:  # fmt: skip
    """ArcFace margin for optimizer step `step` (fractional epochs, not whole ones).

    0 during the plain-logits warmup; then linear from 0 at `ramp_start_epoch` to `margin` at
    `ramp_end_epoch`; `margin` after that.
    """
    epoch = step / max(1, steps_per_epoch)
    if epoch < plain_warmup_epochs or epoch < ramp_start_epoch:
        return 0.0
    if ramp_end_epoch <= ramp_start_epoch or epoch >= ramp_end_epoch:
        return float(margin)
    return float(margin) * (epoch - ramp_start_epoch) / (ramp_end_epoch - ramp_start_epoch)


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
