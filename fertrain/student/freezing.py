"""Progressive unfreezing as one small policy object with hooks (in the manner of Lightning's
`BaseFinetuning`), not branches in the training loop.

The backbone is cut into depth-ordered groups by timm's own `group_matcher(coarse=True)` (stem,
then each stage/block group), so every strategy works unchanged for resnet, efficientnet,
mobilenetv3, convnext and ViT. A strategy is a list of `Phase`s: from `start_epoch` on, these
groups train at this LR under this scheduler. Phases only ever add groups; each newly
unfrozen group joins the optimizer as its own named param group (the layout is saved in
checkpoints and replayed on resume, so a resume works across a phase change).

Strategies (epochs absolute):
  none          everything trains from epoch 0 (cosine over the run)
  two-stage     classifier only at --lr-s1 with ReduceLROnPlateau on val AUC for
                --epochs-s1, then the last block + classifier at --lr-s2 with a cosine over
                --epochs-s2
  two-phase     head only at --lr for --epochs-s1, then the last stage + head at
                --lr / 10 (constant LRs)
  conservative  head; +1 top group at 10; +2 at 20; all at 30
  balanced      head; +1 at 5; +2 at 10; +3 at 15; all at 20
  aggressive    head; +1 at 2; all at 4
  layerwise     head; +1 at 8; +2 at 15; +3 at 25; all at 35;
                each group's LR scaled by --layer-decay per depth below the head
  custom        a YAML list of {epoch, unfreeze: group names | N top groups | all, lr_mult}
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models import group_parameters
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from fertrain.errors import ConfigError
from fertrain.yaml_files import read_yaml_file

STRATEGIES = ("none", "two-stage", "two-phase", "conservative", "balanced", "aggressive", "layerwise", "custom")
# progressive schedules: (epoch, number of top backbone groups trainable; None = all)
PROGRESSIVE: dict[str, list[tuple[int, int | None]]] = {
    "conservative": [(0, 0), (10, 1), (20, 2), (30, None)],
    "balanced": [(0, 0), (5, 1), (10, 2), (15, 3), (20, None)],
    "aggressive": [(0, 0), (2, 1), (4, None)],
    "layerwise": [(0, 0), (8, 1), (15, 2), (25, 3), (35, None)],
}
TINY_GROUP = 0.01  # a trailing group under 1 % of the backbone (a final norm) belongs to the block before it


@dataclass(frozen=True)
class LayerGroup:
    name: str
    params: tuple[str, ...]  # parameter names, relative to the backbone


@dataclass(frozen=True)
class Phase:
    start_epoch: int
    trainable: frozenset[int]  # indices into the backbone groups
    lr: float
    scheduler: str = "cosine-run"  # cosine-run | cosine (over this phase) | plateau | constant
    title: str = ""


def _group_name(index: int, names: list[str], others: set[str]) -> str:
    """The shortest dotted prefix that all of this group's parameters share and no other group's
    has (`layer4`, `blocks.3`), else `stem` for the first group or the joined top-level names."""
    parts = [n.split(".") for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    for k in range(1, min(len(common), min(len(p) for p in parts) - 1) + 1):
        prefix = ".".join(common[:k]) + "."
        if not any(o.startswith(prefix) for o in others):
            return prefix[:-1]
    if index == 0:
        return "stem"
    return "+".join(sorted({p[0] for p in parts}))


def layer_groups(backbone: nn.Module) -> list[LayerGroup]:
    """Depth-ordered parameter groups of a timm backbone (input side first)."""
    if not hasattr(backbone, "group_matcher"):
        raise ConfigError(f"{type(backbone).__name__} has no timm group_matcher; progressive unfreezing needs one")
    grouped = group_parameters(backbone, backbone.group_matcher(coarse=True))
    sizes = dict(backbone.named_parameters())
    groups = [list(v) for _, v in sorted(grouped.items())]
    total = sum(p.numel() for p in sizes.values())
    while len(groups) > 1 and sum(sizes[n].numel() for n in groups[-1]) < TINY_GROUP * total:
        tail = groups.pop()
        groups[-1].extend(tail)
    every = set(sizes)
    return [LayerGroup(_group_name(i, g, every - set(g)), tuple(g)) for i, g in enumerate(groups)]


def _top(n: int | None, count: int) -> frozenset[int]:
    n = count if n is None else min(n, count)
    return frozenset(range(count - n, count))


def load_custom_schedule(spec: str | list, groups: list[LayerGroup]) -> list[tuple[int, frozenset[int], float]]:
    """[(epoch, groups to unfreeze then, lr multiplier)] from a YAML file path or an already-parsed list."""
    where = "--unfreeze-schedule"
    if isinstance(spec, str):
        path = Path(spec)
        spec = read_yaml_file(path, where)
        where = f"{where} {path}"
    if not isinstance(spec, list) or not spec:
        raise ConfigError(f"{where}: expected a non-empty list of {{epoch, unfreeze, lr_mult}}")
    by_name = {g.name: i for i, g in enumerate(groups)}
    out = []
    for k, item in enumerate(spec):
        if not isinstance(item, dict) or "epoch" not in item:
            raise ConfigError(f"{where}: entry {k + 1} needs 'epoch' (and 'unfreeze', 'lr_mult')")
        what = item.get("unfreeze", [])
        if what == "all":
            idx = frozenset(range(len(groups)))
        elif isinstance(what, int):
            idx = _top(what, len(groups))
        else:
            names = [what] if isinstance(what, str) else list(what)
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise ConfigError(f"{where}: entry {k + 1} names unknown group(s) {unknown}; this backbone has "
                                  f"{', '.join(by_name)} (or an integer count of top groups, or 'all')")  # fmt: skip
            idx = frozenset(by_name[n] for n in names)
        out.append((int(item["epoch"]), idx, float(item.get("lr_mult", 1.0))))
    return sorted(out, key=lambda e: e[0])


def build_phases(strategy: str, groups: list[LayerGroup], *, lr: float, epochs: int, epochs_s1: int = 5,
                 lr_s1: float = 1e-3, lr_s2: float = 1e-4,
                 custom: str | list | None = None) -> list[Phase]:  # fmt: skip
    n = len(groups)
    if strategy == "none":
        phases = [Phase(0, _top(None, n), lr, "cosine-run", "all layers")]
    elif strategy == "two-stage":
        phases = [Phase(0, frozenset(), lr_s1, "plateau", "classifier training (backbone frozen)"),
                  Phase(epochs_s1, _top(1, n), lr_s2, "cosine", f"fine-tuning ({groups[-1].name} + classifier)")]
    elif strategy == "two-phase":
        phases = [Phase(0, frozenset(), lr, "constant", "head only"),
                  Phase(epochs_s1, _top(1, n), lr / 10, "constant", f"{groups[-1].name} + head at lr/10")]
    elif strategy in PROGRESSIVE:
        phases = [Phase(e, _top(k, n), lr, "cosine-run",
                        "head only" if k == 0 else "all layers" if k is None or k >= n else f"top {k} group(s) + head")
                  for e, k in PROGRESSIVE[strategy]]  # fmt: skip
    elif strategy == "custom":
        if not custom:
            raise ConfigError("--strategy custom needs --unfreeze-schedule FILE.yaml")
        phases, acc = [], frozenset()
        for e, idx, mult in load_custom_schedule(custom, groups):
            acc = acc | idx
            phases.append(Phase(e, acc, lr * mult, "cosine-run", f"{len(acc)} group(s) + head, lr x{mult:g}"))
    else:
        raise ConfigError(f"--strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if phases[0].start_epoch != 0:
        raise ConfigError(f"--strategy {strategy}: the first phase must start at epoch 0")
    for a, b in itertools.pairwise(phases):
        if b.start_epoch <= a.start_epoch or not a.trainable <= b.trainable:
            raise ConfigError(f"--strategy {strategy}: phases must start at increasing epochs and only add groups")
    return [p for p in phases if p.start_epoch < epochs] or phases[:1]


@dataclass
class UnfreezePolicy:
    """Freezes and unfreezes a `FerNet`'s backbone by phase; the head (and any loss parameters,
    e.g. projections) always train.

    Hooks for the trainer: `param_groups()` for the first optimizer, `on_epoch_start(epoch,
    optimizer)` at every epoch, `on_train_mode(model)` after `model.train()`, and
    `make_scheduler(...)` at each phase start.
    """

    model: nn.Module
    phases: list[Phase]
    freeze_bn: bool = False
    layer_decay: float | None = None
    extra: list[nn.Parameter] = field(default_factory=list)
    weight_decay: float = 0.05
    groups: list[LayerGroup] | None = None  # the backbone's layer_groups (computed when not given)

    def __post_init__(self) -> None:
        self.groups = self.groups or layer_groups(self.model.backbone)
        self.params = dict(self.model.backbone.named_parameters())
        self.unfrozen: set[int] = set()
        self.phase = -1

    # --- structure ---------------------------------------------------------------------
    def phase_at(self, epoch: int) -> int:
        return max(i for i, p in enumerate(self.phases) if p.start_epoch <= epoch)

    def lr_scale(self, index: int) -> float:
        """1 for the head; layer_decay ** (depth below the head) for backbone group `index`."""
        if not self.layer_decay:
            return 1.0
        return float(self.layer_decay ** (len(self.groups) - index))

    def _named_group(self, name: str, params: list[nn.Parameter], scale: float) -> list[dict]:
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # biases and norm weights are not decayed
        return [g for g in ({"name": name, "params": decay, "weight_decay": self.weight_decay, "lr_scale": scale},
                            {"name": f"{name}/no_decay", "params": no_decay, "weight_decay": 0.0, "lr_scale": scale})
                if g["params"]]  # fmt: skip

    def _group_params(self, index: int) -> list[nn.Parameter]:
        return [self.params[n] for n in self.groups[index].params]

    # --- hooks -------------------------------------------------------------------------
    def freeze_before_training(self) -> None:
        for p in self.model.backbone.parameters():
            p.requires_grad_(False)
        self.unfrozen.clear()
        self.phase = -1

    def param_groups(self) -> list[dict]:
        """The first optimizer's groups: head and loss parameters (phase 0's backbone groups are
        added by the first `on_epoch_start`)."""
        self.freeze_before_training()
        head = list(self.model.head.parameters()) + list(self.extra)
        return self._named_group("head", head, 1.0)

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer) -> Phase | None:
        """Unfreeze what the phase of `epoch` adds; returns the phase when it just began."""
        index = self.phase_at(epoch)
        return None if index == self.phase else self.enter_phase(index, optimizer)

    def enter_phase(self, index: int, optimizer: torch.optim.Optimizer) -> Phase:
        """Make phase `index` current: unfreeze its groups and add them to the optimizer (every
        phase in between too, in order, so a resume rebuilds exactly the saved layout), then
        set every group's LR to the phase's (times the group's lr_scale)."""
        for i in range(self.phase + 1, index + 1):
            for g in sorted(self.phases[i].trainable - self.unfrozen):
                params = self._group_params(g)
                for p in params:
                    p.requires_grad_(True)
                for pg in self._named_group(self.groups[g].name, params, self.lr_scale(g)):
                    optimizer.add_param_group(pg)
                self.unfrozen.add(g)
        self.phase = index
        phase = self.phases[index]
        for pg in optimizer.param_groups:
            pg["initial_lr"] = phase.lr
            pg["lr"] = phase.lr * pg.get("lr_scale", 1.0)
        return phase

    def on_train_mode(self, model: nn.Module) -> None:
        """With `freeze_bn`, frozen groups' BatchNorm layers stay in eval mode (statistics fixed)."""
        if not self.freeze_bn:
            return
        frozen = {n for i, g in enumerate(self.groups) if i not in self.unfrozen for n in g.params}
        for name, module in model.backbone.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                own = [f"{name}.{k}" for k, _ in module.named_parameters(recurse=False)]
                if own and all(n in frozen for n in own):
                    module.eval()

    def make_scheduler(self, optimizer: torch.optim.Optimizer, *, epochs: int, min_lr: float,
                       plateau_patience: int = 2, plateau_factor: float = 0.1):  # fmt: skip
        """The phase's scheduler, stepped per epoch: timm's cosine (honours each group's lr_scale),
        torch's ReduceLROnPlateau on val AUC, or None for a constant LR."""
        phase = self.phases[self.phase]
        end = self.phases[self.phase + 1].start_epoch if self.phase + 1 < len(self.phases) else epochs
        if phase.scheduler == "cosine-run":
            return CosineLRScheduler(optimizer, t_initial=epochs, lr_min=min_lr, t_in_epochs=True)
        if phase.scheduler == "cosine":
            return CosineLRScheduler(optimizer, t_initial=max(1, end - phase.start_epoch), lr_min=min_lr)
        if phase.scheduler == "plateau":  # torch's: its state (best, patience counters) is saved with the run
            return ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor, patience=plateau_patience,
                                     min_lr=min_lr)  # fmt: skip
        return None

    def scheduler_epoch(self, epoch: int) -> int:
        """The epoch value the phase's scheduler is stepped with (its own clock for per-phase cosines)."""
        phase = self.phases[self.phase]
        return epoch - phase.start_epoch if phase.scheduler == "cosine" else epoch

    @staticmethod
    def layout(optimizer: torch.optim.Optimizer) -> list[str]:
        return [pg.get("name", "?") for pg in optimizer.param_groups]

    def trainable_counts(self) -> tuple[int, int]:
        total = sum(p.numel() for p in self.model.parameters()) + sum(p.numel() for p in self.extra)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return trainable + sum(p.numel() for p in self.extra if p.requires_grad), total
