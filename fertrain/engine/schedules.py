"""Step-based LR schedules (timm's, with a linear warmup from 0), each a pure function of the
optimizer step, so a resumed run continues exactly.

cosine: to `min_lr` at the last step. step: times `decay_rate` every `decay_epochs`.
multistep: times `decay_rate` at each epoch of `decay_milestones`. plateau: times `decay_rate`
whenever the validation selection metric has not improved for `patience_epochs` evaluations;
the reductions are counted from the run's history (which a checkpoint keeps), not from hidden
scheduler state, so a resumed run reduces exactly when an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler

SCHEDULES = ("cosine", "step", "multistep", "plateau")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, min_lr: float,
                       sched: str = "cosine", steps_per_epoch: int = 1, decay_epochs: float = 30.0,
                       decay_rate: float = 0.1, decay_milestones: Sequence[float] = ()) -> Scheduler:  # fmt: skip
    """Linear warmup from 0 over `warmup_steps`, then the schedule `sched` (see the module)."""
    warmup_steps = min(warmup_steps, max(0, total_steps - 1))
    common = {"warmup_t": warmup_steps, "warmup_lr_init": 0.0, "warmup_prefix": True, "t_in_epochs": False}
    if sched == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=min_lr, **common)
    if sched in ("step", "multistep"):
        # step s runs at timm's t = s + 1 (see set_lr_for_step) and timm applies milestone m at t = m - 1:
        # +2 puts each decay on the first step of its epoch (counted after the warmup)
        every = max(1, round(decay_epochs * steps_per_epoch))
        at = (range(every, total_steps + 1, every) if sched == "step"
              else sorted(round(m * steps_per_epoch) for m in decay_milestones))  # fmt: skip
        return MultiStepLRScheduler(optimizer, decay_t=[t + 2 for t in at], decay_rate=decay_rate, **common)
    if sched == "plateau":  # constant after the warmup; `set_lr_for_step` applies the reductions
        return StepLRScheduler(optimizer, decay_t=10**12, decay_rate=1.0, **common)
    raise ValueError(f"unknown schedule {sched!r}; expected one of {', '.join(SCHEDULES)}")


def plateau_reductions(values: Sequence[float], patience: int, threshold: float = 1e-4) -> int:
    """How many times the LR has been reduced after these evaluations (higher is better): once
    each time `patience` + 1 evaluations in a row fail to beat the best by `threshold` (relative),
    then the count starts over, like torch's ReduceLROnPlateau in 'max' mode without cooldown."""
    best, bad, reductions = float("-inf"), 0, 0
    for value in values:
        if value > best * (1 + threshold) if best > 0 else value > best:
            best, bad = value, 0
        else:
            bad += 1
            if bad > patience:
                reductions, bad = reductions + 1, 0
    return reductions


def set_lr_for_step(scheduler: Scheduler, step: int, factor: float = 1.0, min_lr: float = 0.0) -> float:
    """Set the LR used by optimizer step `step` (0-based), times `factor` (plateau reductions,
    not below `min_lr`), and return it."""
    scheduler.step_update(num_updates=step + 1)
    if factor != 1.0:
        for group in scheduler.optimizer.param_groups:
            group["lr"] = max(group["lr"] * factor, min_lr)
    return float(scheduler.optimizer.param_groups[0]["lr"])
