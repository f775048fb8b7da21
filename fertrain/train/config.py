"""Teacher configuration: dataclass defaults < stage preset < YAML file < command-line flags.

The effective config is written to the run as config.yaml and stored in every checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fertrain.errors import ConfigError

STAGE_PRESETS: dict[str, dict[str, Any]] = {
    # Stage A: every recipe source (FERPlus included) at 224.
    "A": {"img_size": 224, "exclude_sources": []},
    # Stage B: high resolution without the 48x48 FERPlus faces, initialized from Stage A.
    "B": {"img_size": 384, "exclude_sources": ["ferplus"]},
}
BACKBONE_ABBREV = {"resnet18": "RN18", "resnet34": "RN34", "resnet50": "RN50", "efficientnet_b0": "B0",
                   "efficientnet_b3": "B3", "convnext_tiny": "CNXT", "vit_small_patch16_224": "VITS",
                   "vit_tiny_patch16_224": "VITT", "mobilenetv3_large_100": "MNV3", "resnet10t": "RN10T"}  # fmt: skip


@dataclass
class TeacherConfig:
    manifest: str | None = None
    stage: str = "A"
    backbone: str = "resnet18"
    head: str = "arcface"
    img_size: int | None = None  # from the stage preset
    epochs: int = 60
    batch_size: int = 64
    grad_accum_steps: int = 1
    workers: int = 4
    device: str = "auto"
    # optimization
    lr: float = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    lr_warmup_epochs: float = 2.0
    clip_grad: float | None = None
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_augment: bool = True  # torch.compile the augmentation on CUDA devices
    seed: int = 1337
    # ArcFace schedule
    arcface_s: float = 30.0
    arcface_m: float = 0.35
    plain_logits_warmup_epochs: float = 5.0
    margin_ramp_start: float = 5.0
    margin_ramp_end: float = 15.0
    # loss and imbalance
    smoothing: float = 0.0
    balanced_min_per_class: int = 0
    class_weights: str = "none"
    # data
    include_sources: list[str] = field(default_factory=list)
    exclude_sources: list[str] | None = None  # from the stage preset
    train_split: str = "train"
    val_split: str = "val"
    clahe: bool = False
    augment: dict[str, Any] = field(default_factory=dict)  # overrides of AugmentConfig fields
    # runs
    output_root: str = "outputs/teachers"
    output_dir: str | None = None
    eval_every: int = 1
    checkpoint_every_steps: int = 0
    resume: str | None = None
    init_from: str | None = None
    force: bool = False
    recover_stale_lock: bool = False
    pretrained: bool = False
    initial_checkpoint: str | None = None
    skip_onnx: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _fields(cls: type = TeacherConfig) -> set[str]:
    return {f.name for f in fields(cls)}


def load_yaml_config(path: str | Path, cls: type = TeacherConfig) -> dict[str, Any]:
    """A YAML mapping of options for the dataclass `cls`; unknown keys are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value")
    raw = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(raw) - _fields(cls))
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return raw


def resolve_config(overrides: dict[str, Any], yaml_path: str | Path | None = None) -> TeacherConfig:
    """Merge defaults, stage preset, YAML and the flags that were given (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    from_yaml = load_yaml_config(yaml_path) if yaml_path else {}
    stage = str(given.get("stage", from_yaml.get("stage", "A"))).upper()
    if stage not in STAGE_PRESETS:
        raise ConfigError(f"--stage {stage!r}; expected A or B")
    merged = {**STAGE_PRESETS[stage], **from_yaml, **given, "stage": stage}
    unknown = sorted(set(merged) - _fields())
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}")
    cfg = TeacherConfig(**merged)
    if cfg.exclude_sources is None:
        cfg.exclude_sources = []
    for name in ("epochs", "batch_size", "img_size", "grad_accum_steps", "eval_every"):
        if getattr(cfg, name) is None or getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.margin_ramp_end < cfg.margin_ramp_start:
        raise ConfigError("--margin-ramp-end must be >= --margin-ramp-start")
    return cfg


def backbone_abbrev(backbone: str) -> str:
    return BACKBONE_ABBREV.get(backbone) or re.sub(r"[^A-Za-z0-9]+", "", backbone).upper()[:8]


def run_name(cfg: TeacherConfig) -> str:
    abbrev = backbone_abbrev(cfg.backbone)
    return f"{abbrev}_{cfg.backbone}_seed{cfg.seed}_stage{cfg.stage}_img{cfg.img_size}"


def output_dir_of(cfg: TeacherConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(cfg.output_root) / run_name(cfg)
