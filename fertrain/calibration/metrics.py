"""Calibration metrics on logits. Inputs are always logits: probabilities are derived here."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fertrain.calibration.temperature import scale_logits


def _as_tensors(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)


def nll(logits, labels, temperature: float = 1.0) -> float:
    lg, y = _as_tensors(logits, labels)
    return float(F.cross_entropy(lg / temperature, y))


def brier_score(probs, labels) -> float:
    """Multiclass Brier: mean over samples of sum_k (p_k - onehot_k)^2."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    onehot = F.one_hot(y, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(dim=1).mean())


def _bin_index(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of each value: bin i holds (edges[i], edges[i+1]]; exactly 0 goes to bin 0."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    return (torch.bucketize(values, edges, right=False) - 1).clamp(0, n_bins - 1)


def reliability(probs, labels, n_bins: int = 15) -> dict:
    """Per equal-width confidence bin: count, mean confidence, accuracy (the reliability curve)."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    conf, pred = p.max(dim=1)
    correct = (pred == y).double()
    idx = _bin_index(conf, n_bins)
    counts = torch.bincount(idx, minlength=n_bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    nz = counts > 0
    mean_conf = torch.where(nz, conf_sum / counts.clamp(min=1), torch.zeros_like(conf_sum))
    accuracy = torch.where(nz, acc_sum / counts.clamp(min=1), torch.zeros_like(acc_sum))
    return {"edges": torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).tolist(), "count": counts.long().tolist(),
            "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist()}  # fmt: skip


def _ece(r: dict) -> float:
    n = sum(r["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"], strict=True)))


def _mce(r: dict) -> float:
    gaps = [abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"], strict=True) if c]
    return float(max(gaps)) if gaps else 0.0


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE: sum over bins of (bin share) * |accuracy - confidence|, equal-width bins."""
    return _ece(reliability(probs, labels, n_bins))


def max_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """MCE: the largest |accuracy - confidence| over non-empty bins."""
    return _mce(reliability(probs, labels, n_bins))


def per_class_ece(probs, labels, n_bins: int = 15) -> list[float]:
    """One-vs-rest ECE per class: predicted probability of class c against 'label == c'."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    out = []
    for c in range(p.shape[1]):
        pc, hit = p[:, c].contiguous(), (y == c).double()
        idx = _bin_index(pc, n_bins)
        gap = torch.bincount(idx, weights=hit, minlength=n_bins) - torch.bincount(idx, weights=pc, minlength=n_bins)
        out.append(float(gap.abs().sum() / max(1, len(pc))))
    return out


ECE_FLOOR_DRAWS = 400
_FLOOR_CHUNK = 4_000_000  # draws x faces held at once (32 MB of float64)


def ece_noise_floor(probs, n_bins: int = 15, draws: int = ECE_FLOOR_DRAWS, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model would still show with these confidences on this many faces.

    Each draw keeps every face's confidence and replaces whether it was right by a coin that lands
    right with exactly that probability (consistency resampling), then measures ECE as
    `expected_calibration_error` does. On a few thousand faces this is 0.01-0.02, so a measured ECE
    inside the draws' range is sampling noise, not miscalibration. Seeded: the same inputs give the
    same floor.
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    conf = p.max(dim=1).values
    n = len(conf)
    if n == 0:
        raise ValueError("ece_noise_floor: no faces")
    onehot = F.one_hot(_bin_index(conf, n_bins), n_bins).double()  # faces x bins
    conf_sum = conf @ onehot
    gen = torch.Generator().manual_seed(seed)
    per_chunk = max(1, _FLOOR_CHUNK // n)
    eces = []
    for start in range(0, draws, per_chunk):
        hits = (torch.rand(min(per_chunk, draws - start), n, generator=gen, dtype=torch.float64) < conf).double()
        eces.append((hits @ onehot - conf_sum).abs().sum(dim=1) / n)  # sum over bins of n_b/n |acc_b - conf_b|
    ece = torch.cat(eces)
    return {"mean": float(ece.mean()), "p05": float(ece.quantile(0.05)), "p95": float(ece.quantile(0.95)),
            "draws": draws, "seed": seed}  # fmt: skip


def debiased_ece(curve: dict, draws: int = ECE_FLOOR_DRAWS, seed: int = 0) -> dict:
    """ECE with the upward bias of a finite sample taken out, from a `reliability` curve.

    The plug-in ECE adds each bin's sampling noise |acc_b - conf_b| up, so it reads above the model's
    own calibration error (a perfectly calibrated model shows `ece_noise_floor`). The bootstrap bias
    correction estimates that excess from the data: each bin's hits are redrawn `draws` times from
    Binomial(count_b, acc_b), the ECE of each redraw is measured, and the estimate is 2 * ECE - their
    mean (Kumar, Liang & Ma 2019, "Verified uncertainty calibration", debias the same way with normal
    draws). Simulated on 3,309 faces of known calibration error (docs/calibration.md) it is unbiased
    around 0.015 to 0.03 and keeps about half of the plug-in's bias at 0; it may be negative, which
    reads as "no calibration error measurable". `sd`: the redraws' standard deviation, the size of the
    sampling noise on the estimate. Seeded: the same curve gives the same estimate."""
    counts = torch.as_tensor(curve["count"], dtype=torch.float64)
    n = float(counts.sum())
    if n == 0:
        raise ValueError("debiased_ece: no faces")
    conf = torch.as_tensor(curve["confidence"], dtype=torch.float64)
    acc = torch.as_tensor(curve["accuracy"], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    hits = torch.binomial(counts.expand(draws, -1).contiguous(), acc.expand(draws, -1).contiguous(), generator=gen)
    redrawn = (hits - counts * conf).abs().sum(dim=1) / n  # sum over bins of n_b/n |acc*_b - conf_b|
    return {"value": 2 * _ece(curve) - float(redrawn.mean()), "sd": float(redrawn.std()), "draws": draws,
            "seed": seed}  # fmt: skip


def calibration_report(logits, labels, temperature=1.0, n_bins: int = 15, *, noise_floor: bool = False) -> dict:
    """Metrics of softmax(logits / T); T is a scalar or one value per class. The reliability
    curve is computed once and ECE/MCE are read from it. `noise_floor` adds "ece_floor"
    (`ece_noise_floor`): what ECE sampling noise alone gives on these faces, and "ece_debiased"
    (`debiased_ece`): the ECE with that noise's bias taken out (both off during training, where
    they would be paid every epoch)."""
    lg, y = _as_tensors(logits, labels)
    scaled = scale_logits(lg, temperature)
    probs = torch.softmax(scaled, dim=1)
    curve = reliability(probs, y, n_bins)
    report = {
        "temperature": torch.as_tensor(temperature, dtype=torch.float64).tolist(),
        "nll": float(F.cross_entropy(scaled, y)),
        "ece": _ece(curve),
        "mce": _mce(curve),
        "brier": brier_score(probs, y),
        "accuracy": float((probs.argmax(1) == y).double().mean()),
        "per_class_ece": per_class_ece(probs, y, n_bins),
        "reliability": curve,
    }
    if noise_floor:
        report["ece_floor"] = ece_noise_floor(probs, n_bins)
        report["ece_debiased"] = debiased_ece(curve)
    return report
