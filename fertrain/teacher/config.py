"""Teacher configuration: dataclass defaults < stage preset < YAML file < command-line flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fertrain.engine.config import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    TrainConfig,
    backbone_abbrev,
    load_yaml_config,
    resolve_config,
)
from fertrain.engine.schedules import SCHEDULES
from fertrain.errors import ConfigError
from fertrain.models.heads import HEADS
from fertrain.teacher.losses import CLASS_WEIGHT_MODES

STAGE_PRESETS: dict[str, dict[str, Any]] = {
    # Stage A: every recipe source (FERPlus included) at 224.
    "A": {"img_size": 224, "exclude_sources": []},
    # Stage B: high resolution without the 48x48 FERPlus faces, initialized from Stage A.
    "B": {"img_size": 384, "exclude_sources": ["ferplus"]},
}


@dataclass
class TeacherConfig(TrainConfig):
    stage: str = "A"
    head: str = "arcface"
    lr_warmup_epochs: float = 2.0
    # ArcFace schedule
    arcface_s: float = 16.0  # the design notes' 30 with m 0.35 cost 12 points on FER2013 (docs/accuracy.md)
    arcface_m: float = 0.1
    plain_logits_warmup_epochs: float = 5.0
    margin_ramp_start: float = 5.0
    margin_ramp_end: float = 15.0
    # LR schedule after the warmup
    sched: str = "cosine"  # cosine | step | multistep | plateau
    decay_epochs: float = 30.0  # step
    decay_milestones: list[float] = field(default_factory=list)  # multistep: epochs
    decay_rate: float = 0.1  # step, multistep, plateau
    patience_epochs: int = 10  # plateau: evaluations without improvement before a reduction
    # loss and imbalance
    smoothing: float = 0.0
    class_weights: str = "none"
    # runs
    output_root: str = "outputs/teachers"
    init_from: str | None = None

    RANGES: ClassVar[dict[str, Range]] = {
        **TrainConfig.RANGES, "lr_warmup_epochs": NON_NEGATIVE, "arcface_s": POSITIVE, "arcface_m": Range(0, 1.5),
        "plain_logits_warmup_epochs": NON_NEGATIVE, "margin_ramp_start": NON_NEGATIVE, "margin_ramp_end": NON_NEGATIVE,
        "smoothing": FRACTION, "epochs": AT_LEAST_ONE, "decay_epochs": POSITIVE, "decay_rate": Range(0, 1),
        "patience_epochs": NON_NEGATIVE,
    }  # fmt: skip
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        **TrainConfig.CHOICES, "stage": tuple(STAGE_PRESETS), "head": tuple(HEADS), "class_weights": CLASS_WEIGHT_MODES,
        "sched": SCHEDULES,
    }  # fmt: skip

    def validate(self) -> None:
        super().validate()
        if self.margin_ramp_end < self.margin_ramp_start:
            raise ConfigError("--margin-ramp-end must be >= --margin-ramp-start")
        if self.img_size is None:
            raise ConfigError("--img-size is required")
        if self.sched == "multistep" and not self.decay_milestones:
            raise ConfigError("--sched multistep needs --decay-milestones (epochs, e.g. 60,120)")
        if any(m <= 0 for m in self.decay_milestones):
            raise ConfigError(f"--decay-milestones {self.decay_milestones}: expected positive epochs")


def resolve_teacher_config(overrides: dict[str, Any], yaml_path: str | Path | None = None) -> TeacherConfig:
    """Merge defaults, the stage preset, YAML and the flags that were given (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    stage = given.get("stage")
    if stage is None and yaml_path:
        stage = load_yaml_config(yaml_path, TeacherConfig).get("stage")
    stage = str(stage or "A").upper()
    if stage not in STAGE_PRESETS:
        raise ConfigError(f"--stage {stage!r}; expected A or B")
    cfg = resolve_config(TeacherConfig, {**given, "stage": stage}, yaml_path, preset=STAGE_PRESETS[stage])
    if cfg.exclude_sources is None:
        cfg.exclude_sources = []
    return cfg


def run_name(cfg: TeacherConfig) -> str:
    return f"{backbone_abbrev(cfg.backbone)}_{cfg.backbone}_seed{cfg.seed}_stage{cfg.stage}_img{cfg.img_size}"


def output_dir_of(cfg: TeacherConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(cfg.output_root) / run_name(cfg)
