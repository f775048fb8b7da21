"""Student configuration: dataclass defaults < YAML file < command-line flags.

Stored as config.yaml in the run and in every checkpoint, like a teacher's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fertrain.distill.freezing import STRATEGIES
from fertrain.distill.losses import FEATURE_LOSSES, LOSSES, TEACHER_FREE
from fertrain.errors import ConfigError
from fertrain.train.config import _fields, backbone_abbrev, load_yaml_config


@dataclass
class StudentConfig:
    manifest: str | None = None
    softlabels: str | None = None  # offline teacher signal
    teacher: str | None = None  # online: a run directory or ENSEMBLE.json
    backbone: str = "mobilenetv3_large_100"
    head: str = "linear"
    arcface_s: float = 30.0  # unused by the linear head; kept so checkpoints load like a teacher's
    img_size: int = 112
    epochs: int = 30
    batch_size: int = 64
    workers: int = 4
    device: str = "auto"
    # optimization
    opt: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    clip_grad: float | None = None
    amp: bool = False
    channels_last: bool = False
    compile: bool = False  # torch.compile the student backbone (recompiles once per phase change)
    fused_augment: bool = True
    seed: int = 1337
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
    # loss
    loss: str = "dkd"
    temperature: float = 4.0  # KD/DKD/combined temperature
    ce_weight: float | None = None  # None: the loss's own default (KD/combined 0.5, DKD/CRD 1.0)
    kd_weight: float = 0.5
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup: float = 20.0
    feature_weight: float = 1.0  # combined
    crd_dim: int = 128
    crd_negatives: int = 4096
    crd_t: float = 0.07
    crd_momentum: float = 0.5
    crd_weight: float = 0.8
    rkd_distance_weight: float = 25.0
    rkd_angle_weight: float = 50.0
    mmd_weight: float = 1.0
    smoothing: float = 0.0  # ce loss only
    # data
    include_sources: list[str] = field(default_factory=list)
    exclude_sources: list[str] = field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    clahe: bool = False
    augment: dict[str, Any] = field(default_factory=dict)
    # runs
    select_metric: str = "macro_f1"  # best.pt by val macro_f1 | auc | accuracy
    output_root: str = "outputs/students"
    output_dir: str | None = None
    resume: str | None = None
    force: bool = False
    recover_stale_lock: bool = False
    pretrained: bool = False
    initial_checkpoint: str | None = None
    skip_onnx: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


SELECT_METRICS = ("macro_f1", "auc", "accuracy")
# Changing any of these changes what a resumed run would compute: refuse without --force.
STUDENT_SCHEDULE_KEYS = ("epochs", "batch_size", "seed", "backbone", "head", "img_size", "opt", "lr", "min_lr",
                         "weight_decay", "strategy", "epochs_s1", "epochs_s2", "lr_s1", "lr_s2", "layer_decay",
                         "unfreeze_schedule", "freeze_bn", "loss", "temperature", "ce_weight", "kd_weight",
                         "dkd_alpha", "dkd_beta", "dkd_warmup", "feature_weight", "crd_dim", "crd_negatives",
                         "softlabels", "teacher")  # fmt: skip


def resolve_student_config(overrides: dict[str, Any], yaml_path: str | Path | None = None) -> StudentConfig:
    """Merge defaults, YAML and the flags that were given (None = not given), then validate."""
    given = {k: v for k, v in overrides.items() if v is not None}
    from_yaml = load_yaml_config(yaml_path, StudentConfig) if yaml_path else {}
    merged = {**from_yaml, **given}
    unknown = sorted(set(merged) - _fields(StudentConfig))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}")
    if merged.get("strategy") == "two-stage" and "epochs" in given:
        raise ConfigError("--strategy two-stage runs --epochs-s1 + --epochs-s2 epochs; set those instead of --epochs")
    cfg = StudentConfig(**merged)
    if cfg.strategy == "two-stage":
        cfg.epochs = cfg.epochs_s1 + cfg.epochs_s2
    if cfg.loss not in LOSSES:
        raise ConfigError(f"--loss {cfg.loss!r}; expected one of {', '.join(LOSSES)}")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {cfg.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if cfg.select_metric not in SELECT_METRICS:
        raise ConfigError(f"--select-metric {cfg.select_metric!r}; expected one of {', '.join(SELECT_METRICS)}")
    if cfg.softlabels and cfg.teacher:
        raise ConfigError("give either --softlabels (offline) or --teacher (online), not both")
    if cfg.loss not in TEACHER_FREE and not (cfg.softlabels or cfg.teacher):
        raise ConfigError(f"--loss {cfg.loss} needs a teacher signal: --softlabels FILE or --teacher RUN_DIR")
    if cfg.loss in FEATURE_LOSSES and not cfg.teacher:
        raise ConfigError(f"--loss {cfg.loss} matches features, which soft labels do not have; "
                          "use --teacher RUN_DIR (online) or a logit loss (kd, dkd)")  # fmt: skip
    for name in ("epochs", "batch_size", "img_size", "epochs_s1"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    return cfg


def student_run_name(cfg: StudentConfig) -> str:
    return f"{backbone_abbrev(cfg.backbone)}_{cfg.backbone}_{cfg.loss}_{cfg.strategy}_seed{cfg.seed}_img{cfg.img_size}"


def student_output_dir(cfg: StudentConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(cfg.output_root) / student_run_name(cfg)


def loss_kwargs(cfg: StudentConfig, *, student_dim: int, teacher_dim: int, n_data: int) -> dict[str, Any]:
    """Constructor arguments of the selected loss class from the flat config."""
    ce = {} if cfg.ce_weight is None else {"ce_weight": cfg.ce_weight}
    feats = {"student_dim": student_dim, "teacher_dim": teacher_dim}
    return {
        "ce": lambda: {"smoothing": cfg.smoothing},
        "kd": lambda: {"temperature": cfg.temperature, "kd_weight": cfg.kd_weight, **ce},
        "dkd": lambda: {"alpha": cfg.dkd_alpha, "beta": cfg.dkd_beta, "temperature": cfg.temperature,
                        "warmup_epochs": cfg.dkd_warmup, **ce},
        "combined": lambda: {**feats, "temperature": cfg.temperature, "kd_weight": cfg.kd_weight,
                             "feature_weight": cfg.feature_weight, **ce},
        "crd": lambda: {**feats, "n_data": n_data, "feat_dim": cfg.crd_dim, "negatives": cfg.crd_negatives,
                        "nce_t": cfg.crd_t, "momentum": cfg.crd_momentum, "weight": cfg.crd_weight,
                        "seed": cfg.seed, **ce},
        "rkd": lambda: {"distance_weight": cfg.rkd_distance_weight, "angle_weight": cfg.rkd_angle_weight},
        "mmd": lambda: {**feats, "weight": cfg.mmd_weight},
    }[cfg.loss]()  # fmt: skip
