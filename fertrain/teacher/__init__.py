"""Teachers, Stage A/B: configuration, ArcFace margin schedule, loss and the trainer."""

from fertrain.teacher.config import TeacherConfig, output_dir_of, resolve_teacher_config, run_name
from fertrain.teacher.margin import margin_at_step
from fertrain.teacher.trainer import TeacherTrainer, train_teacher

__all__ = ["TeacherConfig", "TeacherTrainer", "margin_at_step", "output_dir_of", "resolve_teacher_config",
           "run_name", "train_teacher"]  # fmt: skip
