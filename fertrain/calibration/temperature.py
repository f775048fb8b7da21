"""Global temperature scaling: one T > 0 minimizing validation NLL of logits / T (LBFGS)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class TemperatureFit:
    temperature: float
    converged: bool
    nll_before: float
    nll_after: float
    iterations: int
    at_bound: bool = False  # T hit the allowed range (e.g. near-uniform logits push T to infinity)

    def to_dict(self) -> dict:
        return asdict(self)


T_RANGE = (0.05, 100.0)


def fit_temperature(logits, labels, *, init: float = 1.5, max_iter: int = 200, tol: float = 1e-7,
                    t_range: tuple[float, float] = T_RANGE) -> TemperatureFit:  # fmt: skip
    """Fit T by LBFGS on NLL, parametrized as T = exp(t) so it stays positive.

    T is kept within `t_range`: logits with no signal make NLL fall all the way to T -> inf
    (uniform predictions); such a fit is reported as at the bound and not converged.
    """
    lg = torch.as_tensor(logits, dtype=torch.float64).detach()
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.tensor(math.log(init), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lg / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    state = opt.state[opt._params[0]]
    iterations = int(state.get("n_iter", 0))
    t = float(log_t.detach().exp())
    at_bound = not t_range[0] <= t <= t_range[1]
    t = min(max(t, t_range[0]), t_range[1])
    with torch.enable_grad():  # gradient at the optimum says whether LBFGS converged
        lt = torch.tensor(math.log(t), dtype=torch.float64, requires_grad=True)
        loss = F.cross_entropy(lg / lt.exp(), y)
        (g,) = torch.autograd.grad(loss, lt)
    return TemperatureFit(
        temperature=t,
        converged=bool(abs(float(g)) < 1e-4 and iterations < max_iter and not at_bound),
        nll_before=float(F.cross_entropy(lg, y)),
        nll_after=float(loss.detach()),
        iterations=iterations,
        at_bound=at_bound,
    )
