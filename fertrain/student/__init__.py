"""Students: configuration, distillation losses, progressive unfreezing, teacher signals and the trainer."""

from fertrain.student.config import StudentConfig, resolve_student_config, student_output_dir
from fertrain.student.losses import (
    FEATURE_LOSSES,
    LOSSES,
    CELoss,
    CombinedLoss,
    CRDLoss,
    DKDLoss,
    KDLoss,
    MMDLoss,
    RKDLoss,
    build_loss,
    kl_at_temperature,
)
from fertrain.student.trainer import StudentTrainer, train_student

__all__ = ["FEATURE_LOSSES", "LOSSES", "CELoss", "CRDLoss", "CombinedLoss", "DKDLoss", "KDLoss", "MMDLoss",
           "RKDLoss", "StudentConfig", "StudentTrainer", "build_loss", "kl_at_temperature", "resolve_student_config",
           "student_output_dir", "train_student"]  # fmt: skip
