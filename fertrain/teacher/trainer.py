"""Teacher training, Stage A/B: manifest-driven, ArcFace warmup + margin ramp, step-based
warmup/cosine LR, evaluated and calibrated every epoch (the loop itself is the engine's).

    from fertrain.teacher import resolve_teacher_config, train_teacher
    result = train_teacher(resolve_teacher_config({"manifest": "m.parquet", "epochs": 10}))
"""

from __future__ import annotations

import torch

from fertrain.console import console
from fertrain.engine import Batch, Trainer, TrainResult, run_training
from fertrain.engine.schedules import build_lr_scheduler, plateau_reductions, set_lr_for_step
from fertrain.errors import FertrainError
from fertrain.labels import NUM_CLASSES
from fertrain.runs.checkpoints import CHECKPOINT_LAST, load_checkpoint, run_checkpoint
from fertrain.teacher.config import TeacherConfig, output_dir_of
from fertrain.teacher.losses import class_weights, teacher_loss
from fertrain.teacher.margin import margin_at_step


class TeacherTrainer(Trainer):
    kind = "teacher"
    cfg: TeacherConfig

    def head_kwargs(self) -> dict:
        return {"s": self.cfg.arcface_s} if self.cfg.head == "arcface" else {}

    def setup(self) -> None:
        w = class_weights(self.train_rows["label"].to_numpy(), NUM_CLASSES, self.cfg.class_weights)
        self.class_w = w.to(self.device) if w is not None else None
        self.margin = 0.0
        self.lr_factor = 1.0  # plateau reductions

    def create_scheduler(self):
        c = self.cfg
        return build_lr_scheduler(self.optimizer, total_steps=self.total_steps, min_lr=c.min_lr,
                                  warmup_steps=round(c.lr_warmup_epochs * self.steps_per_epoch), sched=c.sched,
                                  steps_per_epoch=self.steps_per_epoch, decay_epochs=c.decay_epochs,
                                  decay_rate=c.decay_rate, decay_milestones=c.decay_milestones)  # fmt: skip

    def on_epoch_start(self) -> None:
        """Plateau: the reductions so far, from the recorded evaluations (a resume sees the same)."""
        c, key = self.cfg, f"val_{self.cfg.select_metric}"
        if c.sched == "plateau":
            n = plateau_reductions([r[key] for r in self.history if key in r], c.patience_epochs)
            self.lr_factor = c.decay_rate**n

    def initialize(self) -> None:
        """--init-from: a new run (new optimizer and schedule) from another run's weights."""
        if not self.cfg.init_from:
            return
        path = run_checkpoint(self.cfg.init_from, "--init-from")
        missing, unexpected = self.model.load_state_dict(load_checkpoint(path)["model"], strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise FertrainError(f"--init-from {path}: weights do not fit {self.cfg.backbone} "
                                f"(missing {missing[:5]}, unexpected {unexpected[:5]})")  # fmt: skip
        console.print(f"initialized from {path} (new optimizer and schedule)", soft_wrap=True)

    def before_step(self) -> dict[str, float]:
        c = self.cfg
        if c.head == "arcface":
            self.margin = margin_at_step(self.global_step, self.steps_per_epoch, margin=c.arcface_m,
                                         plain_warmup_epochs=c.plain_logits_warmup_epochs,
                                         ramp_start_epoch=c.margin_ramp_start, ramp_end_epoch=c.margin_ramp_end)
        lr = set_lr_for_step(self.scheduler, self.global_step, self.lr_factor, c.min_lr)
        return {"lr": lr, "margin": self.margin}

    # --- the step as a CUDA graph: the mix is read from the device, the margin is the key ----
    def graph_blockers(self) -> list[str]:
        return []

    def graph_key(self):
        return ("margin", self.margin)  # baked into the head's kernels; constant after its ramp

    def forward_loss(self, x: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        with self.autocast():  # the ArcFace margin goes to each image's own label
            logits = self.model.head(self.backbone_fn(x), batch.labels, self.margin)
        loss = teacher_loss(logits, batch.labels, batch.soft, smoothing=self.cfg.smoothing, weights=self.class_w,
                            mix=self.mix)  # fmt: skip
        return {"loss": loss}

    def epoch_info(self) -> dict:
        return {"stage": self.cfg.stage}


def train_teacher(cfg: TeacherConfig, *, show_progress: bool = True, command: str | None = None,
                  until_epoch: int | None = None) -> TrainResult:  # fmt: skip
    """Train (or resume) one teacher run under its lock (`until_epoch`: stop early, resumable)."""
    out = output_dir_of(cfg)
    if cfg.init_from and (out / CHECKPOINT_LAST).is_file():
        console.print(f"[yellow]note:[/] {out} already has {CHECKPOINT_LAST}; resuming it, --init-from is ignored",
                      soft_wrap=True)  # fmt: skip
    return run_training(TeacherTrainer, cfg, out, show_progress=show_progress, command=command,
                        until_epoch=until_epoch)  # fmt: skip
