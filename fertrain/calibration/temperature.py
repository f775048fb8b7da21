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


@dataclass
class PerClassFit:
    temperatures: list[float]  # one per class; equal to the global T where refinement was not kept
    kept: list[bool]  # classes whose own temperature lowered validation NLL
    nll_global: float
    nll_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def scale_logits(logits: torch.Tensor, temperature: float | list[float] | torch.Tensor) -> torch.Tensor:
    """logits / T with a scalar T, or column-wise with one T per class."""
    t = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device)
    return logits / (t.view(1, -1) if t.ndim else t)


def fit_per_class_temperature(logits, labels, global_t: float, *, reg: float = 0.1, max_iter: int = 200,
                              t_range: tuple[float, float] = T_RANGE) -> PerClassFit:  # fmt: skip
    """Refine the global T with one temperature per class (each logit column scaled by its own T).

    Fitted by LBFGS on NLL + reg * sum_c (log T_c - log T)^2, which pulls minority classes with
    few validation samples back toward the global T. Then, class by class, a refined T_c is
    kept only if swapping it in lowers validation NLL, so the result never raises it.
    """
    lg = torch.as_tensor(logits, dtype=torch.float64).detach()
    y = torch.as_tensor(labels, dtype=torch.long)
    k = lg.shape[1]
    log_g = math.log(global_t)
    log_t = torch.full((k,), log_g, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lg / log_t.exp().view(1, -1), y) + reg * ((log_t - log_g) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    refined = log_t.detach().exp().clamp(*t_range).tolist()

    def nll_of(ts: list[float]) -> float:
        return float(F.cross_entropy(lg / torch.tensor(ts, dtype=torch.float64).view(1, -1), y))

    current = [float(global_t)] * k
    nll_global = best = nll_of(current)
    kept = [False] * k
    for c in sorted(range(k), key=lambda c: -abs(math.log(refined[c]) - log_g)):  # biggest changes first
        trial = list(current)
        trial[c] = refined[c]
        nll = nll_of(trial)
        if nll < best - 1e-12:
            current, best, kept[c] = trial, nll, True
    return PerClassFit(current, kept, nll_global, best)
