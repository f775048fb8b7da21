"""The ArcFace margin schedule: a pure function of the optimizer step, so a resumed run continues exactly."""

from __future__ import annotations


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
