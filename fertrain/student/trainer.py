"""Student distillation: a small timm model learns from soft labels (offline) or a frozen teacher
(online) under one distillation loss, with progressive unfreezing (the loop is the engine's).

    from fertrain.student import resolve_student_config, train_student
    result = train_student(resolve_student_config({"manifest": "m.parquet", "softlabels": "sl.parquet"}))

Run directory (the same run layer as teachers: lock, alignment report, environment, resume):
    best.pt                     best by --select-metric over the run (teacher-compatible:
                                `fertrain evaluate`, `calibrate`, `export onnx` take the run)
    student_stage{k}_best.pt    best within unfreezing phase k
    student_final.pt            the weights after the last epoch
    checkpoint_last.pt          resume state (model, loss, optimizer + its param-group layout,
                                scheduler, phase, RNG), every epoch and every N steps
    history.json, training_history_two_stage.json, metrics.csv, metrics.json, results.json,
    config.yaml, preprocess.json, training_curves.png, confusion_test.png
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from fertrain.data import ManifestFaces, PreprocessSpec
from fertrain.engine import Batch, Trainer, TrainResult, run_training
from fertrain.ensemble import load_teacher
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests.io import read_stamp
from fertrain.models import build_model, pooled_width
from fertrain.runs.checkpoints import BEST, load_checkpoint, save_checkpoint
from fertrain.softlabels.io import load_softlabels
from fertrain.student.config import StudentConfig, student_output_dir
from fertrain.student.freezing import UnfreezePolicy, build_phases, layer_groups
from fertrain.student.losses import FEATURE_LOSSES, GRAPHABLE_LOSSES, DKDLoss, build_loss, mixup_criterion
from fertrain.student.reports import FINAL, StudentOutcome, print_epoch, print_header, print_phase, write_results
from fertrain.student.signal import OnlineTeacherSignal, SoftLabelSignal


class StudentTrainer(Trainer):
    kind = "student"
    cfg: StudentConfig

    @classmethod
    def splits_of(cls, cfg: StudentConfig) -> list[str]:
        return [cfg.train_split, cfg.val_split, cfg.test_split]

    @classmethod
    def input_digests(cls, cfg: StudentConfig) -> dict[str, str]:
        """The soft-label files by the sha256 of their stamps (which loading them checks against their content),
        and an online teacher by its weights and temperatures: each is learnt from at every step and read again
        by each resume, and each can be made again at the same path (a re-export, a teacher re-calibrated). A
        file without a stamp, or a path that does not exist, is left out: loading it gives the error that
        names it."""
        digests = {}
        for option in ("softlabels", "label_targets"):
            if (path := getattr(cfg, option)) and (stamped := read_stamp(path)):
                digests[option] = stamped
        if cfg.teacher and Path(cfg.teacher).exists():
            digests["teacher"] = load_teacher(cfg.teacher, tta="none").fingerprint()
        return digests

    def setup(self) -> None:
        cfg = self.cfg
        self.phase_best: dict[int, float] = {}
        self.signal = self.teacher_signal()
        self.label_targets = self.load_label_targets() if cfg.label_targets else None
        dims = {"student_dim": pooled_width(self.model.backbone), "n_data": len(self.train_rows), "seed": cfg.seed}
        self.loss = build_loss(cfg.loss, teacher_dim=getattr(self.signal, "feature_dim", 0) or dims["student_dim"],
                               **dims).to(self.device)  # fmt: skip
        self.ce_weight = float(getattr(self.loss, "ce_weight", 1.0))
        groups = layer_groups(self.model.backbone)
        phases = build_phases(cfg.strategy, groups, lr=cfg.lr, epochs=cfg.epochs, epochs_s1=cfg.epochs_s1,
                              lr_s1=cfg.lr_s1, lr_s2=cfg.lr_s2, custom=cfg.unfreeze_schedule)  # fmt: skip
        self.policy = UnfreezePolicy(self.model, phases, freeze_bn=cfg.freeze_bn,
                                     layer_decay=cfg.layer_decay if cfg.strategy == "layerwise" else None,
                                     extra=list(self.loss.parameters()), weight_decay=cfg.weight_decay,
                                     groups=groups)  # fmt: skip
        test_rows = self.split_rows(self.run.data.rows, cfg.test_split)  # type: ignore[union-attr]
        self.test_set = ManifestFaces(self.manifest, test_rows, self.spec) if len(test_rows) else None

    def teacher_signal(self):
        cfg = self.cfg
        if cfg.softlabels:
            return SoftLabelSignal(cfg.softlabels, self.manifest, self.train_rows, self.device)
        if not cfg.teacher:
            return None
        signal = OnlineTeacherSignal(cfg.teacher, self.device, need_features=cfg.loss["name"] in FEATURE_LOSSES,
                                     amp=cfg.amp, channels_last=cfg.channels_last, fused=self.fused)  # fmt: skip
        teacher_colors = {s.color for s in signal.specs}
        if cfg.color == "auto" and len(teacher_colors) == 1:  # distilling online: see faces as the teacher does
            self.spec = dataclasses.replace(self.spec, color=teacher_colors.pop())
        for name, student_value in (("clahe", cfg.clahe), ("color", self.spec.color)):
            used = {getattr(s, name) for s in signal.specs}
            if used != {student_value}:
                raise ConfigError(f"--teacher {cfg.teacher} was trained with {name}={sorted(used)}; the student has "
                                  f"{name}={student_value}: both must see the same CPU preprocessing (set --{name} to "
                                  "match)")  # fmt: skip
        return signal

    def load_spec(self) -> PreprocessSpec:
        """CPU-side shrinking keeps the largest size any model needs; each resizes on the device."""
        size = max([self.spec.img_size, *[s.img_size for s in getattr(self.signal, "specs", [])]])
        return dataclasses.replace(self.spec, img_size=size)

    def optimizer_params(self):
        return self.policy.param_groups()

    def make_scheduler(self):
        c = self.cfg
        return self.policy.make_scheduler(self.optimizer, epochs=c.epochs, min_lr=c.min_lr,
                                          plateau_patience=c.plateau_patience, plateau_factor=c.plateau_factor)

    # --- hooks ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.dist.is_main:
            print_header(self.cfg, self.device)

    def on_epoch_start(self) -> None:
        phase = self.policy.on_epoch_start(self.epoch, self.optimizer)
        if phase is not None:
            self.scheduler = self.make_scheduler()
            if self.dist.is_main:
                print_phase(self.policy, phase, *self.policy.trainable_counts(), self.cfg)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(self.policy.scheduler_epoch(self.epoch))

    def on_train_mode(self) -> None:
        self.loss.train()
        self.policy.on_train_mode(self.model)

    def training_input(self, batch: Batch, values: torch.Tensor | None) -> torch.Tensor:
        """Augment, then mixup/cutmix with the batch's mirror (the step's draw, `self.mix`); an online
        teacher sees the same augmented, mixed faces at its own size."""
        params = self.augment_params(batch)  # one draw: the teachers see the student's view at their sizes
        if self.signal is not None:
            batch.teacher = self.signal(batch.index, x_uint8=batch.images, sizes=batch.sizes, params=params,
                                        augment=self.augment, host_sizes=batch.host_sizes,
                                        autocast_cache=self.step_graphs is None, mix=self.mix)  # fmt: skip
        return self.mixed(self.augmented(batch, params=params))

    def trained_modules(self) -> list[torch.nn.Module]:
        return [self.model, self.loss]  # a loss may hold trained weights and buffers (CRD's memory banks)

    # --- the step as a CUDA graph: the teachers' forward, the student's step and the loss ----
    def graph_blockers(self) -> list[str]:
        name = self.cfg.loss["name"]
        return [] if name in GRAPHABLE_LOSSES else [f"--loss {name} (captured: {', '.join(GRAPHABLE_LOSSES)})"]

    def graph_key(self):
        """The unfreezing phase (which parameters train) and DKD's warm-up factor (constant after it);
        its step reads no per-step values."""
        ramp = self.loss.ramp(self.loss_epoch()) if isinstance(self.loss, DKDLoss) else None
        return ("phase", self.policy.phase, ramp)

    def loss_epoch(self) -> float:
        return self.epoch + self.step_in_epoch / self.steps_per_epoch

    def load_label_targets(self) -> torch.Tensor:
        """--label-targets: each training row's probabilities, on the device, indexed like the batch's rows;
        they replace the hard labels in the labels' term."""
        sl = load_softlabels(self.cfg.label_targets, self.manifest)  # refuses another manifest or changed row keys
        probs = sl.probs_of(self.train_rows, "--label-targets needs one for every training row")
        return torch.from_numpy(probs).to(self.device)

    def forward_loss(self, x: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        with self.autocast():
            feats = self.backbone_fn(x)
            logits = self.model.head(feats)
        teacher = batch.teacher
        teacher_logits = teacher.logits if teacher else None
        terms = {"student_features": feats.float(), "teacher_features": teacher.features if teacher else None,
                 "index": batch.index, "epoch": self.loss_epoch()}  # fmt: skip
        labels = batch.labels if self.label_targets is None else self.label_targets[batch.index]
        if self.mix is None:
            return self.loss(logits.float(), labels, teacher_logits, **terms)
        partner = teacher.partner_logits if teacher else None
        return mixup_criterion(self.loss, self.mix, logits.float(), labels, teacher_logits, partner, **terms)

    def train_record(self, means: dict[str, float]) -> dict:
        task = means.get("task", means["loss"])
        return {"train_loss": means["loss"], "train_task_loss": task,
                "train_distill_loss": means["loss"] - self.ce_weight * task,
                **{f"train_{k}": v for k, v in means.items() if k not in ("loss", "task", "distill")}}  # fmt: skip

    def epoch_info(self) -> dict:
        trainable, total = self.policy.trainable_counts()
        return {"stage": self.policy.phase + 1, "phase": self.policy.phases[self.policy.phase].title,
                "trainable_params": trainable, "total_params": total}  # fmt: skip

    def on_evaluated(self, metrics: dict, weights: dict) -> list[str]:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(metrics["auc"])
        value, stage = float(metrics[self.cfg.select_metric]), self.policy.phase + 1
        if value <= self.phase_best.get(stage, -math.inf):
            return []
        self.phase_best[stage] = value
        if weights is None:  # a torchrun rank other than 0: it tracks the phase best, rank 0 saves it
            return []
        save_checkpoint(self.out / f"student_stage{stage}_best.pt", weights)
        return [f"best stage {stage} model ({self.cfg.select_metric}: {value:.4f})"]

    def extra_state(self) -> dict:
        return {"loss": self.loss.state_dict(), "layout": self.policy.layout(self.optimizer),
                "phase": self.policy.phase, "phase_best": self.phase_best}  # fmt: skip

    def restore_structure(self, ckpt: dict) -> None:
        self.policy.enter_phase(ckpt["phase"], self.optimizer)  # rebuild the saved param-group layout
        layout = self.policy.layout(self.optimizer)
        if layout != ckpt["layout"]:
            raise FertrainError(f"optimizer layout {ckpt['layout']} cannot be rebuilt (got {layout}); "
                                "was the backbone or strategy changed?")  # fmt: skip
        self.scheduler = self.make_scheduler()

    def restore_extra(self, ckpt: dict) -> None:
        self.loss.load_state_dict(ckpt["loss"])
        self.phase_best = {int(k): v for k, v in ckpt["phase_best"].items()}

    def print_epoch(self, rec: dict, saved: list[str]) -> None:
        print_epoch(rec, self.cfg.epochs, saved)

    def on_fit_end(self) -> None:
        save_checkpoint(self.out / FINAL, self.weights_payload(self.model, None) | {"epoch": self.epoch})
        if self.test_set is not None:
            best = build_model(self.cfg.backbone, head=self.cfg.head).to(self.device)
            best.load_state_dict(load_checkpoint(self.out / BEST)["model"])
            test = self.evaluate(self.test_set, best.eval())
            self.test_metrics = {k: test[k] for k in ("n", "accuracy", "macro_f1", "auc", "nll", "per_class",
                                                      "confusion_matrix")}  # fmt: skip
        trainable, total = self.policy.trainable_counts()
        self.params = {"total": total, "trainable_at_end": trainable,
                       "student": sum(p.numel() for p in self.model.parameters())}  # fmt: skip
        write_results(StudentOutcome(self.out, self.cfg, self.history, self.best, self.test_metrics, self.params,
                                     getattr(self.signal, "describe", None), self.policy, self.total_sec))


def train_student(cfg: StudentConfig, *, show_progress: bool = True, command: str | None = None,
                  until_epoch: int | None = None) -> TrainResult:  # fmt: skip
    """Train (or resume) one student run under its lock."""
    return run_training(StudentTrainer, cfg, student_output_dir(cfg), show_progress=show_progress, command=command,
                        until_epoch=until_epoch)  # fmt: skip
