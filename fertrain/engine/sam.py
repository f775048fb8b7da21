"""Sharpness-aware minimization (`--sam RHO`, `--sam-adaptive`): the gradient the optimizer takes
is the one at the worst nearby weights.

SAM (Foret et al. 2021) takes two forward/backward passes on the same inputs per step: the
first gradient g gives the direction of steepest ascent, the weights move by
e = rho * g / ||g|| (one norm over all trained weights), the second pass's gradient at w + e
replaces g, and the weights go back to w before the optimizer step. ASAM (Kwon et al. 2021)
scales the neighbourhood by each weight's size, e = rho * T^2 * g / ||T * g|| with
T = |w| + 0.01 (the paper's eta keeps zero weights movable), so the radius means the same for
layers of different scales (its rho is larger, ~0.5-2). SAM is reported to help most where
labels are noisy, as FER2013's are.

Only device tensor maths, no host reads: a step with SAM can be captured as a CUDA graph. The
second pass would move the batch-norm running statistics (and a loss's memory banks) a second
time for the same batch: every buffer of the given modules is kept and put back, so the
statistics are those of the weights the model is evaluated with. Under torchrun each process
ascends along its own batch's gradient (the paper's m-sharpness); the second pass's gradients
are averaged as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

NORM_EPS = 1e-12  # keeps the step finite when the gradient is all zeros
ASAM_ETA = 0.01  # ASAM's offset of the weight scale |w|


class SharpnessAware:
    def __init__(self, rho: float, adaptive: bool = False):
        self.rho, self.adaptive = float(rho), adaptive

    @torch.no_grad()
    def perturbation(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """e for each parameter from its current .grad, in a few multi-tensor kernels (as the EMA
        update does), not a handful per parameter: this runs every step. A non-finite gradient (an
        fp16 overflow) gives a non-finite e, so the second gradient is not finite either and the loss
        scaler skips the step as it would have without SAM."""
        grads = [p.grad for p in params]
        scales = torch._foreach_add(torch._foreach_abs(params), ASAM_ETA) if self.adaptive else None
        scaled = grads if scales is None else torch._foreach_mul(grads, scales)
        factor = self.rho / (torch.nn.utils.get_total_norm(scaled) + NORM_EPS)  # clip_grad_norm_'s norm
        return torch._foreach_mul(scaled if scales is None else torch._foreach_mul(scaled, scales), factor)

    @contextmanager
    def ascended(self, params: Iterable[torch.Tensor], modules: Iterable[torch.nn.Module]) -> Iterator[None]:
        """Within: the parameters that have a gradient moved to w + e and their gradients zeroed
        (the next backward gives the sharpness-aware gradient); after: the weights and every
        buffer of `modules` exactly as they were."""
        params = [p for p in params if p.grad is not None]
        buffers = [b for m in modules for b in m.buffers()]
        kept_buffers = [b.clone() for b in buffers]
        kept_weights = [p.detach().clone() for p in params]
        with torch.no_grad():
            torch._foreach_add_(params, self.perturbation(params))
            torch._foreach_zero_([p.grad for p in params])
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, kept_weights)
                if buffers:
                    torch._foreach_copy_(buffers, kept_buffers)
