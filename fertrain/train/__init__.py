"""Teacher training (Stage A/B) and evaluation."""

from fertrain.train.config import TeacherConfig, output_dir_of, resolve_config, run_name
from fertrain.train.schedules import build_lr_scheduler, margin_at_step, set_lr_for_step
from fertrain.train.teacher import TeacherResult, train_teacher

__all__ = [
    "TeacherConfig", "TeacherResult", "build_lr_scheduler", "margin_at_step", "output_dir_of", "resolve_config",
    "run_name", "set_lr_for_step", "train_teacher",
]  # fmt: skip
