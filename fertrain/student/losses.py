"""Distillation losses: one short class per loss, each returning a dict of named terms.

Every class's `forward` returns {"loss": total, "task": CE, <term>: value, ...} so the trainer
can log each term separately (train_task_loss, train_distill_loss = loss - ce_weight * task).
Teacher inputs are logits; offline soft labels become logits as log(probabilities). Feature
losses (combined, crd, rkd, mmd) also take pooled student and teacher features and own any
projection they need, so their parameters are trained with the student.

A loss is configured as one mapping, straight into the registry (YAML `loss: {name: dkd,
beta: 8}`, CLI `--loss dkd --loss-opt beta=8`): `build_loss(spec, **runtime)` is
`LOSSES[name](**options, **runtime)`, where runtime values (feature widths, dataset size,
seed) come from the trainer and every option is checked first by `check_loss_spec`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fertrain.engine.config import FRACTION, NON_NEGATIVE, POSITIVE, Range
from fertrain.errors import ConfigError


def kl_at_temperature(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * t * t


class CELoss(nn.Module):
    """The task term alone (a student without a teacher)."""

    def __init__(self, smoothing: float = 0.0):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, student_logits, labels, teacher_logits=None, **_) -> dict[str, torch.Tensor]:
        task = F.cross_entropy(student_logits, labels, label_smoothing=self.smoothing)
        return {"loss": task, "task": task}


class KDLoss(nn.Module):
    """Hinton et al. 2015: ce_weight * CE(labels) + kd_weight * T^2 KL(teacher_T || student_T)."""

    def __init__(self, temperature: float = 4.0, ce_weight: float = 0.5, kd_weight: float = 0.5):
        super().__init__()
        self.t, self.ce_weight, self.kd_weight = temperature, ce_weight, kd_weight

    def forward(self, student_logits, labels, teacher_logits, **_) -> dict[str, torch.Tensor]:
        task = F.cross_entropy(student_logits, labels)
        distill = kl_at_temperature(student_logits, teacher_logits, self.t)
        return {"loss": self.ce_weight * task + self.kd_weight * distill, "task": task, "distill": distill}


class DKDLoss(nn.Module):
    """Decoupled KD (Zhao et al. 2022): KD split into a target-class term (TCKD: the binary
    target vs non-target distribution) and a non-target term (NCKD: the distribution among the
    non-target classes), weighted alpha and beta; the distillation weight ramps in linearly
    over `warmup` epochs. Defaults as the reference implementation: alpha 1, beta 8, T 4,
    warmup 20, CE weight 1.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: float = 20.0,
                 ce_weight: float = 1.0):  # fmt: skip
        super().__init__()
        self.alpha, self.beta, self.t, self.warmup, self.ce_weight = alpha, beta, temperature, warmup, ce_weight

    def parts(self, student_logits, labels, teacher_logits) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.t
        target = torch.zeros_like(student_logits, dtype=torch.bool).scatter_(1, labels.view(-1, 1), True)
        p_s = F.softmax(student_logits / t, dim=1)
        p_t = F.softmax(teacher_logits / t, dim=1)
        bs = torch.stack([(p_s * target).sum(1), (p_s * ~target).sum(1)], dim=1)  # [p_target, 1 - p_target]
        bt = torch.stack([(p_t * target).sum(1), (p_t * ~target).sum(1)], dim=1)
        tckd = F.kl_div(torch.log(bs.clamp_min(1e-12)), bt, reduction="batchmean") * t * t
        big = torch.finfo(student_logits.dtype).max / 4
        masked_s = (student_logits / t).masked_fill(target, -big)  # drop the target class: softmax over the rest
        masked_t = (teacher_logits / t).masked_fill(target, -big)
        nckd = F.kl_div(F.log_softmax(masked_s, dim=1), F.softmax(masked_t, dim=1), reduction="batchmean") * t * t
        return tckd, nckd

    def ramp(self, epoch: float) -> float:
        """The distillation weight's warm-up factor at (fractional) `epoch`."""
        return min(1.0, epoch / self.warmup) if self.warmup > 0 else 1.0

    def forward(self, student_logits, labels, teacher_logits, epoch: float = 0.0, **_) -> dict[str, torch.Tensor]:
        task = F.cross_entropy(student_logits, labels)
        tckd, nckd = self.parts(student_logits, labels, teacher_logits)
        distill = self.ramp(epoch) * (self.alpha * tckd + self.beta * nckd)
        return {"loss": self.ce_weight * task + distill, "task": task, "distill": distill, "tckd": tckd, "nckd": nckd}


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x).clamp_min(1e-12)


class RKDLoss(nn.Module):
    """Relational KD (Park et al. 2019) on features: distance (pairwise distances normalized by
    their mean, Huber) and angle (cosines of angles in every triplet, Huber). Relations do not
    depend on the feature width, so no projection is needed."""

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0):
        super().__init__()
        self.dw, self.aw = distance_weight, angle_weight

    @staticmethod
    def distance_term(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        ds, dt = _pairwise_distances(fs), _pairwise_distances(ft)
        off = ~torch.eye(len(fs), dtype=torch.bool, device=fs.device)
        return F.smooth_l1_loss(ds[off] / ds[off].mean(), dt[off] / dt[off].mean())

    @staticmethod
    def angle_term(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        def cosines(f):
            e = F.normalize(f.unsqueeze(0) - f.unsqueeze(1), p=2, dim=2)  # e[i, j] = unit(f_j - f_i)
            return torch.bmm(e, e.transpose(1, 2)).view(-1)

        return F.smooth_l1_loss(cosines(fs), cosines(ft))

    def forward(self, student_logits, labels, teacher_logits=None, *, student_features, teacher_features,
                **_) -> dict[str, torch.Tensor]:  # fmt: skip
        task = F.cross_entropy(student_logits, labels)
        dist = self.distance_term(student_features.float(), teacher_features.float())
        angle = self.angle_term(student_features.float(), teacher_features.float())
        return {"loss": task + self.dw * dist + self.aw * angle, "task": task, "rkd_distance": dist, "rkd_angle": angle}


class MMDLoss(nn.Module):
    """Feature distribution matching: squared maximum mean discrepancy between the student's and
    the teacher's feature batches, Gaussian kernels at several bandwidths (median heuristic)."""

    def __init__(self, weight: float = 1.0, scales: tuple[float, ...] = (0.5, 1.0, 2.0), student_dim: int = 0,
                 teacher_dim: int = 0):  # fmt: skip
        super().__init__()
        self.weight, self.scales = weight, scales
        self.proj = _projection(student_dim, teacher_dim)

    def mmd2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xy = torch.cat([x, y])
        d2 = torch.cdist(xy, xy).pow(2)
        bandwidth = d2.detach()[d2.detach() > 0].median().clamp_min(1e-6)
        k = sum(torch.exp(-d2 / (s * bandwidth)) for s in self.scales)
        n = len(x)
        return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()

    def forward(self, student_logits, labels, teacher_logits=None, *, student_features, teacher_features,
                **_) -> dict[str, torch.Tensor]:  # fmt: skip
        task = F.cross_entropy(student_logits, labels)
        mmd = self.mmd2(self.proj(student_features.float()), teacher_features.float())
        return {"loss": task + self.weight * mmd, "task": task, "mmd": mmd}


def _projection(student_dim: int, teacher_dim: int) -> nn.Module:
    """A linear map into the teacher's feature width when the widths differ (trained with the student)."""
    return nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)


class CombinedLoss(nn.Module):
    """Task + KD + feature matching: MSE between the L2-normalized projected student features and
    the L2-normalized teacher features (the `combined` loss)."""

    def __init__(self, student_dim: int, teacher_dim: int, temperature: float = 4.0, ce_weight: float = 0.5,
                 kd_weight: float = 0.5, feature_weight: float = 1.0):  # fmt: skip
        super().__init__()
        self.kd = KDLoss(temperature, ce_weight, kd_weight)
        self.proj = _projection(student_dim, teacher_dim)
        self.feature_weight = feature_weight

    def forward(self, student_logits, labels, teacher_logits, *, student_features, teacher_features,
                **_) -> dict[str, torch.Tensor]:  # fmt: skip
        out = self.kd(student_logits, labels, teacher_logits)
        fs = F.normalize(self.proj(student_features.float()), dim=1)
        feature = F.mse_loss(fs, F.normalize(teacher_features.float(), dim=1), reduction="sum") / len(fs)
        return {**out, "loss": out["loss"] + self.feature_weight * feature, "feature": feature}


class CRDLoss(nn.Module):
    """Contrastive representation distillation (Tian et al. 2020), softmax form with memory banks.

    Student and teacher features are embedded (linear + L2 norm) into `feat_dim`. For each sample,
    the student embedding must pick its own teacher embedding out of the teacher memory bank among
    `negatives` random other samples (and symmetrically the teacher embedding among student
    entries). The banks hold one momentum-averaged embedding per training row (indexed by the
    sample's row position), are buffers (saved with the run) and are updated after each batch.
    """

    def __init__(self, student_dim: int, teacher_dim: int, n_data: int, feat_dim: int = 128, negatives: int = 4096,
                 nce_t: float = 0.07, momentum: float = 0.5, weight: float = 0.8, ce_weight: float = 1.0,
                 seed: int = 0):  # fmt: skip
        super().__init__()
        if n_data < 2:
            raise ConfigError("--loss crd needs at least 2 training rows for its memory bank")
        self.embed_s, self.embed_t = nn.Linear(student_dim, feat_dim), nn.Linear(teacher_dim, feat_dim)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("bank_s", F.normalize(torch.randn(n_data, feat_dim, generator=g), dim=1))
        self.register_buffer("bank_t", F.normalize(torch.randn(n_data, feat_dim, generator=g), dim=1))
        self.negatives, self.t, self.momentum = min(negatives, n_data - 1), nce_t, momentum
        self.weight, self.ce_weight = weight, ce_weight

    def contrast(self, anchor: torch.Tensor, bank: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """InfoNCE: column 0 is the positive (the same row's entry), then random negatives."""
        neg = torch.randint(0, len(bank), (len(anchor), self.negatives), device=anchor.device)
        candidates = bank[torch.cat([index.view(-1, 1), neg], dim=1)]  # (b, 1 + K, d)
        logits = torch.bmm(candidates, anchor.unsqueeze(2)).squeeze(2) / self.t
        return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))

    @torch.no_grad()
    def update_bank(self, bank: torch.Tensor, index: torch.Tensor, emb: torch.Tensor) -> None:
        mixed = bank[index] * self.momentum + emb.detach().to(bank.dtype) * (1 - self.momentum)
        bank[index] = F.normalize(mixed, dim=1)

    def forward(self, student_logits, labels, teacher_logits=None, *, student_features, teacher_features, index,
                **_) -> dict[str, torch.Tensor]:  # fmt: skip
        task = F.cross_entropy(student_logits, labels)
        es = F.normalize(self.embed_s(student_features.float()), dim=1)
        et = F.normalize(self.embed_t(teacher_features.float()), dim=1)
        crd = self.contrast(es, self.bank_t, index) + self.contrast(et, self.bank_s, index)
        if self.training:
            self.update_bank(self.bank_s, index, es)
            self.update_bank(self.bank_t, index, et)
        return {"loss": self.ce_weight * task + self.weight * crd, "task": task, "crd": crd}


LOSSES: dict[str, type[nn.Module]] = {"ce": CELoss, "kd": KDLoss, "dkd": DKDLoss, "combined": CombinedLoss,
                                      "crd": CRDLoss, "rkd": RKDLoss, "mmd": MMDLoss}  # fmt: skip
TEACHER_FREE = {"ce"}  # needs no teacher at all
# the losses whose step can be captured as a CUDA graph: device ops only, and no host value that
# changes every step except DKD's warm-up factor (`ramp`, part of the graph's key)
GRAPHABLE_LOSSES = ("ce", "kd", "dkd")
FEATURE_LOSSES = {"combined", "crd", "rkd", "mmd"}  # need teacher features: online (--teacher) only
# the losses `mixup_criterion` can mix: terms of the logits and labels alone (CRD writes each row's
# features into its memory banks, which a mixed face would corrupt; the other feature losses are not offered)
MIXABLE_LOSSES = ("ce", "kd", "dkd")
# the losses whose labels' term is a plain cross-entropy, which takes probabilities as targets as well
# as class indices (`--label-targets`); DKD splits the logits at the target class and needs its index
SOFT_TARGET_LOSSES = ("ce", "kd")
RUNTIME = frozenset({"student_dim", "teacher_dim", "n_data", "seed"})  # given by the trainer, not the user
OPTION_RANGES = {
    "temperature": POSITIVE, "ce_weight": NON_NEGATIVE, "kd_weight": NON_NEGATIVE, "alpha": NON_NEGATIVE,
    "beta": NON_NEGATIVE, "warmup": NON_NEGATIVE, "feature_weight": NON_NEGATIVE, "smoothing": FRACTION,
    "feat_dim": Range(1), "negatives": Range(1), "nce_t": POSITIVE, "momentum": Range(0, 1), "weight": NON_NEGATIVE,
    "distance_weight": NON_NEGATIVE, "angle_weight": NON_NEGATIVE,
}  # fmt: skip


def mixup_criterion(loss: nn.Module, mix: torch.Tensor, student_logits: torch.Tensor, labels: torch.Tensor,
                    teacher_logits: torch.Tensor | None, partner_teacher_logits: torch.Tensor | None,
                    **kwargs: Any) -> dict[str, torch.Tensor]:  # fmt: skip
    """The loss of a batch mixed with its mirror (`mix_vector` `mix`, on the device): each term is the
    target-lambda mix of the term against the face's own label and against its partner's (B-1-i),
    the mixup paper's criterion. For KD that is the KL to the mix of the two teacher distributions
    (up to a constant): the partner's offline soft labels, or, online, the teacher's output on the
    mixed face itself for both (`partner_teacher_logits` is then `teacher_logits`)."""
    own = loss(student_logits, labels, teacher_logits, **kwargs)
    partner = loss(student_logits, labels.flip(0), partner_teacher_logits, **kwargs)
    return {k: own[k] * mix[2] + partner[k] * mix[3] for k in own}


def loss_options(name: str) -> dict[str, Any]:
    """The options a user may set for loss `name`, with their defaults."""
    params = inspect.signature(LOSSES[name]).parameters
    return {k: p.default for k, p in params.items() if k not in RUNTIME and p.default is not inspect.Parameter.empty}


def check_loss_spec(spec: str | dict) -> dict:
    """{"name": NAME, **options}: the name known, each option one the loss takes, of the default's
    type and in range (a ConfigError naming `--loss-opt KEY` otherwise)."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("name", None)
    if name not in LOSSES:
        raise ConfigError(f"--loss {name!r}; expected one of {', '.join(LOSSES)}")
    allowed = loss_options(name)
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ConfigError(f"--loss-opt {', '.join(unknown)}: not an option of loss {name}; it takes "
                          f"{', '.join(f'{k}={v}' for k, v in allowed.items())}")  # fmt: skip
    for key, value in spec.items():
        default = allowed[key]
        if isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"--loss-opt {key}: expected a number, got {value!r}")
            if isinstance(default, int) and not isinstance(default, bool) and not float(value).is_integer():
                raise ConfigError(f"--loss-opt {key}: expected a whole number, got {value!r}")
            rng = OPTION_RANGES.get(key)
            if rng is not None and not rng.holds(float(value)):
                raise ConfigError(f"--loss-opt {key} must be {rng.describe()}, got {value!r}")
            spec[key] = type(default)(value)
    return {"name": name, **spec}


def effective_loss_spec(spec: str | dict) -> dict:
    """The loss as it runs: its name and every option, defaults filled in (`{name: kd}` is
    `{name: kd, temperature: 4.0}`)."""
    spec = check_loss_spec(spec)
    resolved = {"name": spec["name"], **loss_options(spec["name"]), **spec}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}  # YAML gives lists


def build_loss(spec: str | dict, **runtime: Any) -> nn.Module:
    """`LOSSES[name](**options, **runtime)`, passing only the runtime values the loss takes."""
    spec = check_loss_spec(spec)
    name = spec.pop("name")
    takes = inspect.signature(LOSSES[name]).parameters
    return LOSSES[name](**spec, **{k: v for k, v in runtime.items() if k in takes})
