"""Student configuration: dataclass defaults < YAML file < command-line flags.

The distillation loss is one mapping, `loss: {name: dkd, beta: 8, ...}`, passed straight to the
loss registry; on the command line `--loss NAME` picks it and `--loss-opt KEY=VALUE` sets its
options (a YAML's options for another loss are dropped when `--loss` switches losses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fertrain.engine.config import (
    NON_NEGATIVE,
    POSITIVE,
    Range,
    TrainConfig,
    backbone_abbrev,
    load_yaml_config,
    parse_key_values,
    resolve_config,
)
from fertrain.errors import ConfigError
from fertrain.manifests.schema import SPLITS
from fertrain.models.heads import HEADS
from fertrain.student.freezing import STRATEGIES
from fertrain.student.losses import (
    FEATURE_LOSSES,
    MIXABLE_LOSSES,
    SOFT_TARGET_LOSSES,
    TEACHER_FREE,
    check_loss_spec,
    effective_loss_spec,
)


@dataclass
class StudentConfig(TrainConfig):
    EFFECTIVE: ClassVar[dict[str, Callable[[Any], Any]]] = {**TrainConfig.EFFECTIVE, "loss": effective_loss_spec}
    softlabels: str | None = None  # offline teacher signal
    teacher: str | None = None  # online: a run directory or ENSEMBLE.json
    label_targets: str | None = None  # soft labels that replace the hard labels in the labels' term
    backbone: str = "mobilenetv3_large_100"
    img_size: int | None = 112
    epochs: int = 30
    lr: float = 1e-3
    exclude_sources: list[str] = field(default_factory=list)
    test_split: str = "test"
    # progressive unfreezing
    strategy: str = "none"
    epochs_s1: int = 5
    epochs_s2: int = 20
    lr_s1: float = 1e-3
    lr_s2: float = 1e-4
    layer_decay: float = 0.5  # layerwise strategy: LR multiplier per group below the head
    unfreeze_schedule: Any = None  # custom strategy: YAML path or list
    freeze_bn: bool = False
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    # distillation loss: {"name": ..., **options of that loss}
    loss: dict[str, Any] | str = field(default_factory=lambda: {"name": "dkd"})
    output_root: str = "outputs/students"

    RANGES: ClassVar[dict[str, Range]] = {
        **TrainConfig.RANGES, "epochs_s1": Range(1), "epochs_s2": Range(1), "lr_s1": POSITIVE, "lr_s2": POSITIVE,
        "layer_decay": Range(0, 1, closed_low=False), "plateau_patience": NON_NEGATIVE,
        "plateau_factor": Range(0, 1, closed_low=False, closed_high=False),
    }  # fmt: skip
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {**TrainConfig.CHOICES, "strategy": STRATEGIES,
                                                     "head": tuple(HEADS), "test_split": SPLITS}  # fmt: skip

    def validate(self) -> None:
        super().validate()
        self.loss = check_loss_spec(self.loss)
        name = self.loss["name"]
        if self.softlabels and self.teacher:
            raise ConfigError("give either --softlabels (offline) or --teacher (online), not both")
        if name not in TEACHER_FREE and not (self.softlabels or self.teacher):
            raise ConfigError(f"--loss {name} needs a teacher signal: --softlabels FILE or --teacher RUN_DIR")
        if name in FEATURE_LOSSES and not self.teacher:
            raise ConfigError(f"--loss {name} matches features, which soft labels do not have; "
                              "use --teacher RUN_DIR (online) or a logit loss (kd, dkd)")  # fmt: skip
        if self.label_targets and name not in SOFT_TARGET_LOSSES:
            raise ConfigError(f"--label-targets replaces the hard labels of a cross-entropy term; --loss {name} "
                              f"needs class indices: use one of {', '.join(SOFT_TARGET_LOSSES)}")  # fmt: skip
        if self.img_size is None:
            raise ConfigError("--img-size is required")
        if self.mix.active and name not in MIXABLE_LOSSES:
            raise ConfigError(f"--mixup/--cutmix mix each face's loss with its partner's; --loss {name} cannot be "
                              f"mixed that way: use one of {', '.join(MIXABLE_LOSSES)}, or --mixup 0 --cutmix 0")


def parse_loss_opts(items: list[str] | None) -> dict[str, Any]:
    """`--loss-opt KEY=VALUE` (repeatable), values read as YAML scalars (8, 0.5, true)."""
    return parse_key_values(items, "--loss-opt", "beta=8")


def resolve_student_config(overrides: dict[str, Any], yaml_path: str | Path | None = None,
                           loss_opts: dict[str, Any] | None = None) -> StudentConfig:  # fmt: skip
    """Merge defaults, YAML and the flags that were given (None = not given), then validate.

    `overrides["loss"]` may be a name (`--loss`) or a full mapping; `loss_opts` (`--loss-opt`)
    are merged on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    from_yaml = load_yaml_config(yaml_path, StudentConfig) if yaml_path else {}
    base = from_yaml.get("loss", {"name": "dkd"})
    base = {"name": base} if isinstance(base, str) else dict(base) if isinstance(base, dict) else base
    if not isinstance(base, dict):
        raise ConfigError(f"--config {yaml_path}: loss: expected a name or a mapping {{name: ..., option: value}}")
    chosen = given.get("loss")
    if isinstance(chosen, str):
        base = base if base.get("name") == chosen else {"name": chosen}
    elif isinstance(chosen, dict):
        base = dict(chosen)
    if loss_opts or chosen is not None or "loss" in from_yaml:
        given["loss"] = {**base, **(loss_opts or {})}
    if given.get("strategy", from_yaml.get("strategy")) == "two-stage" and "epochs" in given:
        raise ConfigError("--strategy two-stage runs --epochs-s1 + --epochs-s2 epochs; set those instead of --epochs")
    cfg = resolve_config(StudentConfig, given, yaml_path)
    if cfg.strategy == "two-stage":
        cfg.epochs = cfg.epochs_s1 + cfg.epochs_s2
    return cfg


def student_run_name(cfg: StudentConfig) -> str:
    return (f"{backbone_abbrev(cfg.backbone)}_{cfg.backbone}_{cfg.loss['name']}_{cfg.strategy}_seed{cfg.seed}"
            f"_img{cfg.img_size}")  # fmt: skip


def student_output_dir(cfg: StudentConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(cfg.output_root) / student_run_name(cfg)
