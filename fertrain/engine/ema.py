"""Model EMA: timm's `ModelEmaV3` (its decay, warmup and state dict), with the per-step update run
on tensor lists gathered once.

timm walks both modules' `state_dict()` on every optimizer step (building two ordered dicts and
detaching every tensor) and copies each integer buffer with its own kernel; at 112 px, where a
training step is bound by host time rather than by the GPU, that walk is a visible part of the
step (docs/benchmarks.md has the host time it saves). Parameters keep their identity through optimizer steps,
`load_state_dict` (in place) and `.to()` (which swaps a parameter's data, not the parameter);
buffers can be replaced by `.to()`, so their identity is checked on every update and the lists
are gathered again when one changed.
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3


class ModelEma(ModelEmaV3):
    def __init__(self, model: torch.nn.Module, **kwargs):
        super().__init__(model, **kwargs)
        self._lists: tuple | None = None  # (model, buffer slots, ema floats, model floats, ema others, model others)

    def _gather(self, model: torch.nn.Module) -> tuple:
        ema_float, model_float, ema_other, model_other = [], [], [], []
        pairs = zip(self.module.state_dict(keep_vars=True).values(), model.state_dict(keep_vars=True).values(),
                    strict=True)  # fmt: skip
        for ema_v, model_v in pairs:
            if ema_v.is_floating_point():
                ema_float.append(ema_v)
                model_float.append(model_v)
            else:
                ema_other.append(ema_v)
                model_other.append(model_v)
        # where each buffer lives: `.to()` replaces a buffer by assigning into its module's `_buffers`
        slots = [(m._buffers, name, b) for root in (model, self.module) for m in root.modules()
                 for name, b in m._buffers.items() if b is not None]  # fmt: skip
        return model, slots, ema_float, model_float, ema_other, model_other

    def _current(self, model: torch.nn.Module) -> tuple:
        """The gathered lists, gathered again when `model` is another module or a buffer was replaced
        (a flat check of the recorded slots: walking the module tree every step costs more)."""
        lists = self._lists
        if lists is None or lists[0] is not model or any(d.get(n) is not b for d, n, b in lists[1]):
            self._lists = lists = self._gather(model)
        return lists

    @torch.no_grad()
    def apply_update_(self, model: torch.nn.Module, decay: float) -> None:
        if not self.foreach:  # EMA on another device: timm's per-tensor path
            super().apply_update_(model, decay)
            return
        self.update_by(model, 1.0 - decay)

    @torch.no_grad()
    def update_by(self, model: torch.nn.Module, weight: float | torch.Tensor) -> None:
        """One update with weight 1 - decay: a float, or a device tensor (a step captured as a
        CUDA graph replays it with each step's value)."""
        _, _, ema_float, model_float, ema_other, model_other = self._current(model)
        # torch's own kernel, not timm's private helper (absent in timm 1.0.29); the EMA is a deep copy
        # of the model, so each pair has one dtype
        weights = [weight] * len(ema_float) if isinstance(weight, torch.Tensor) else weight
        torch._foreach_lerp_(ema_float, model_float, weights)
        if ema_other:
            torch._foreach_copy_(ema_other, model_other)
