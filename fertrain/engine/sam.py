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
        """e for each parameter from its current .grad; all zeros when the gradient is not finite
        (an fp16 overflow: the loss scaler then skips the step as usual)."""
        scales = [p.abs() + ASAM_ETA for p in params] if self.adaptive else [None] * len(params)
        scaled = [p.grad if t is None else p.grad * t for p, t in zip(params, scales, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s.float()) for s in scaled]))
        factor = torch.where(torch.isfinite(norm), self.rho / (norm + NORM_EPS), torch.zeros_like(norm))
        # where the norm is not finite the factor is 0, and nan_to_num clears the inf * 0 entries
        return [torch.nan_to_num((s if t is None else s * t) * factor.to(s.dtype), nan=0.0, posinf=0.0, neginf=0.0)
                for s, t in zip(scaled, scales, strict=True)]  # fmt: skip

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
            for p, e in zip(params, self.perturbation(params), strict=True):
                p.add_(e)
                p.grad.zero_()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(params, kept_weights, strict=True):
                    p.copy_(w)
                for b, kept in zip(buffers, kept_buffers, strict=True):
                    b.copy_(kept)
