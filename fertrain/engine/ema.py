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
        self._lists: tuple | None = None  # (model, its buffers, ema floats, model floats, ema others, model others)

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
        return model, tuple(model.buffers()) + tuple(self.module.buffers()), ema_float, model_float, ema_other, \
            model_other  # fmt: skip

    def _current(self, model: torch.nn.Module) -> tuple:
        lists = self._lists
        buffers = tuple(model.buffers()) + tuple(self.module.buffers())
        if lists is None or lists[0] is not model or len(lists[1]) != len(buffers) or \
                any(a is not b for a, b in zip(lists[1], buffers, strict=True)):  # fmt: skip
            self._lists = lists = self._gather(model)
        return lists

    @torch.no_grad()
    def apply_update_(self, model: torch.nn.Module, decay: float) -> None:
        if not self.foreach:  # EMA on another device: timm's per-tensor path
            super().apply_update_(model, decay)
            return
        _, _, ema_float, model_float, ema_other, model_other = self._current(model)
        self._foreach_lerp_(ema_float, model_float, weight=1.0 - decay)
        if ema_other:
            torch._foreach_copy_(ema_other, model_other)
