"""Student distillation (seeds 000, 001, 003, 004): a small timm model learns from soft labels
(offline) or a frozen teacher (online) under one distillation loss, with progressive unfreezing.

    from fertrain.distill.config import resolve_student_config
    from fertrain.distill.trainer import train_student
    result = train_student(resolve_student_config({"manifest": "m.parquet", "softlabels": "sl.parquet"}))

Run directory (the same run layer as teachers: lock, alignment report, environment, resume):
    best.pt                          best by --select-metric over the run (teacher-compatible:
                                     `fertrain evaluate`, `calibrate`, `export onnx` take the run)
    student_stage{k}_best.pt         best within phase k (seed 000: stage1 / stage2)
    student_final.pt                 the weights after the last epoch
    checkpoint_last.pt               resume state (model, loss, optimizer + its param-group
                                     layout, scheduler, phase, RNG), written every epoch
    history.json, training_history_two_stage.json, metrics.csv, metrics.json, results.json,
    config.yaml, preprocess.json, model.onnx (+ .json)
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score
from timm.optim import create_optimizer_v2
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from fertrain.atomic import atomic_write_json, atomic_write_text
from fertrain.console import console
from fertrain.data import AugmentConfig, ManifestFaces, PreprocessSpec, augment_batch, epoch_order, face_loader
from fertrain.data.augment import step_generator
from fertrain.distill.config import STUDENT_SCHEDULE_KEYS, StudentConfig, loss_kwargs, student_output_dir
from fertrain.distill.freezing import UnfreezePolicy, build_phases, layer_groups
from fertrain.distill.losses import FEATURE_LOSSES, LOSSES
from fertrain.distill.signal import OnlineTeacherSignal, SoftLabelSignal
from fertrain.errors import ConfigError, FertrainError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests import SourceFilter
from fertrain.models import build_model, normalization_of
from fertrain.models.factory import pooled_width
from fertrain.runs import Run, open_run
from fertrain.train.checkpoint import (
    BEST,
    CHECKPOINT_LAST,
    check_resume_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fertrain.train.evaluate import autocast_for, collect_logits, evaluate_logits
from fertrain.train.progress import epoch_progress
from fertrain.train.teacher import SYNC_EVERY, resolve_device, seed_everything

CHECKPOINT_FORMAT = "fertrain-student-v1"
FINAL = "student_final.pt"
RULE = "=" * 80


@dataclass
class StudentResult:
    output_dir: Path
    history: list[dict]
    best: dict
    test: dict | None = None
    onnx: dict | None = None
    resumed_from_epoch: int | None = None
    params: dict = field(default_factory=dict)


def macro_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present with both outcomes (seed 000's val_auc)."""
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), 1).numpy()
    present = [c for c in range(probs.shape[1]) if 0 < (labels == c).sum() < len(labels)]
    scores = [roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(scores)) if scores else float("nan")


class StudentTrainer:
    def __init__(self, cfg: StudentConfig, run: Run, *, show_progress: bool = True):
        self.cfg, self.run, self.show = cfg, run, show_progress
        self.out = run.output_dir
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        rows = run.data.rows  # type: ignore[union-attr]
        manifest = run.data.manifest  # type: ignore[union-attr]
        split = {s: rows[rows["split"] == s].reset_index(drop=True) for s in (cfg.train_split, cfg.val_split,
                                                                               cfg.test_split)}  # fmt: skip
        self.train_rows, self.val_rows = split[cfg.train_split], split[cfg.val_split]
        self.test_rows = split[cfg.test_split]
        if len(self.train_rows) < cfg.batch_size:
            raise ConfigError(f"{len(self.train_rows)} '{cfg.train_split}' rows in {cfg.manifest} after the source "
                              f"filter: fewer than one batch of {cfg.batch_size}")  # fmt: skip
        self.model = build_model(cfg.backbone, head=cfg.head, pretrained=cfg.pretrained,
                                 initial_checkpoint=cfg.initial_checkpoint).to(self.device)  # fmt: skip
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # compiled for training steps only; evaluation and checkpoints use the plain module
        self.backbone_fn = torch.compile(self.model.backbone) if cfg.compile else self.model.backbone
        mean, std = normalization_of(self.model)
        self.spec = PreprocessSpec(img_size=cfg.img_size, clahe=cfg.clahe, mean=mean, std=std)
        self.fused = self.device.type == "cuda" and cfg.fused_augment
        self.signal = self._teacher_signal(manifest)
        # CPU-side shrinking keeps the largest size any model needs; each resizes on the device
        load_size = max([cfg.img_size, *[s.img_size for s in getattr(self.signal, "specs", [])]])
        self.train_set = ManifestFaces(manifest, self.train_rows, PreprocessSpec(load_size, cfg.clahe, mean, std))
        self.val_set = ManifestFaces(manifest, self.val_rows, self.spec) if len(self.val_rows) else None
        self.test_set = ManifestFaces(manifest, self.test_rows, self.spec) if len(self.test_rows) else None
        self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
        self.labels = self.train_set.labels
        self.steps_per_epoch = len(self.train_rows) // cfg.batch_size
        student_dim = pooled_width(self.model.backbone)
        self.loss = LOSSES[cfg.loss](**loss_kwargs(cfg, student_dim=student_dim,
                                                   teacher_dim=getattr(self.signal, "feature_dim", 0) or student_dim,
                                                   n_data=len(self.train_rows))).to(self.device)  # fmt: skip
        self.ce_weight = float(getattr(self.loss, "ce_weight", 1.0))
        groups = layer_groups(self.model.backbone)
        phases = build_phases(cfg.strategy, groups, lr=cfg.lr, epochs=cfg.epochs, epochs_s1=cfg.epochs_s1,
                              lr_s1=cfg.lr_s1, lr_s2=cfg.lr_s2, custom=cfg.unfreeze_schedule)  # fmt: skip
        self.policy = UnfreezePolicy(self.model, phases, freeze_bn=cfg.freeze_bn,
                                     layer_decay=cfg.layer_decay if cfg.strategy == "layerwise" else None,
                                     extra=list(self.loss.parameters()), weight_decay=cfg.weight_decay,
                                     groups=groups)  # fmt: skip
        self.optimizer = create_optimizer_v2(self.policy.param_groups(), opt=cfg.opt, lr=cfg.lr,
                                             weight_decay=cfg.weight_decay)  # fmt: skip
        self.scheduler = None
        fp16 = cfg.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.epoch, self.global_step = 0, 0
        self.history: list[dict] = []
        self.best: dict = {"metric": -math.inf}
        self.phase_best: dict[int, float] = {}
        self.total_sec = 0.0
        self.resumed_from: int | None = None

    def _teacher_signal(self, manifest):
        cfg = self.cfg
        if cfg.softlabels:
            return SoftLabelSignal(cfg.softlabels, manifest, self.train_rows, self.device)
        if cfg.teacher:
            signal = OnlineTeacherSignal(cfg.teacher, self.device, need_features=cfg.loss in FEATURE_LOSSES,
                                         amp=cfg.amp, channels_last=cfg.channels_last, fused=self.fused)  # fmt: skip
            clahe = {s.clahe for s in signal.specs}
            if clahe != {cfg.clahe}:
                raise ConfigError(f"--teacher {cfg.teacher} was trained with clahe={sorted(clahe)}; the student has "
                                  f"clahe={cfg.clahe}: both must see the same CPU preprocessing (set --clahe to match)")
            return signal
        return None

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(), "layout": self.policy.layout(self.optimizer),
            "phase": self.policy.phase, "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "global_step": self.global_step,
            "rng": rng_state(), "config": self.cfg.to_dict(), "class_names": list(CLASS_NAMES),
            "preprocess": self.spec.to_dict(), "best": self.best, "phase_best": self.phase_best,
            "history": self.history, "total_sec": self.total_sec,
            "manifest_sha256": self.run.data.manifest.sha256,  # type: ignore[union-attr]
        }  # fmt: skip

    def restore(self, ckpt: dict, path: Path) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise FertrainError(f"{path}: not a fertrain student checkpoint (format {ckpt.get('format')!r})")
        check_resume_config(ckpt["config"], self.cfg.to_dict(), path, self.cfg.force, STUDENT_SCHEDULE_KEYS)
        self.model.load_state_dict(ckpt["model"])
        self.loss.load_state_dict(ckpt["loss"])
        self.policy.enter_phase(ckpt["phase"], self.optimizer)  # rebuild the saved param-group layout
        layout = self.policy.layout(self.optimizer)
        if layout != ckpt["layout"]:
            raise FertrainError(f"{path}: optimizer layout {ckpt['layout']} cannot be rebuilt (got {layout}); "
                                "was the backbone or strategy changed?")  # fmt: skip
        self.scheduler = self.make_scheduler()
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # after the scheduler: restores the LRs it had
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.global_step = ckpt["epoch"], ckpt["global_step"]
        self.best, self.phase_best = ckpt["best"], {int(k): v for k, v in ckpt["phase_best"].items()}
        self.history, self.total_sec = ckpt["history"], ckpt["total_sec"]
        set_rng_state(ckpt["rng"])
        self.resumed_from = self.epoch

    def start(self) -> None:
        last = self.out / CHECKPOINT_LAST
        source = Path(self.cfg.resume) if self.cfg.resume else (last if last.is_file() else None)
        if source is not None:
            self.restore(load_checkpoint(source), source)
            console.print(f"resuming {source} at epoch {self.epoch} (phase {self.policy.phase + 1})", soft_wrap=True)

    def make_scheduler(self):
        return self.policy.make_scheduler(self.optimizer, epochs=self.cfg.epochs, min_lr=self.cfg.min_lr,
                                          plateau_patience=self.cfg.plateau_patience,
                                          plateau_factor=self.cfg.plateau_factor)  # fmt: skip

    # --- one epoch -------------------------------------------------------------------------
    def begin_epoch(self) -> None:
        phase = self.policy.on_epoch_start(self.epoch, self.optimizer)
        if phase is not None:
            self.scheduler = self.make_scheduler()
            trainable, total = self.policy.trainable_counts()
            print_phase(self.policy, phase, trainable, total, self.cfg)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(self.policy.scheduler_epoch(self.epoch))

    def train_loader(self) -> DataLoader:
        order = epoch_order(self.labels, seed=self.cfg.seed, epoch=self.epoch)
        order = order[: self.steps_per_epoch * self.cfg.batch_size]
        return face_loader(self.train_set, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
                           device=self.device, order=order.tolist(), drop_last=True)  # fmt: skip

    def step(self, x: torch.Tensor, sizes: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> dict:
        cfg, dev = self.cfg, self.device
        host_sizes = sizes
        x, sizes, y, idx = (t.to(dev, non_blocking=True) for t in (x, sizes, y, idx))
        seed_step = self.global_step

        def generator() -> torch.Generator:
            return step_generator(cfg.seed, seed_step, dev)

        teacher = None
        if self.signal is not None:
            teacher = self.signal(idx, x_uint8=x, sizes=sizes, generator=generator, augment=self.augment,
                                  host_sizes=host_sizes)  # fmt: skip
        xs = augment_batch(x, sizes, self.spec.img_size, self.augment, self.spec.mean, self.spec.std, generator(),
                           cfg.channels_last, fused=self.fused)  # fmt: skip
        with autocast_for(dev, cfg.amp):
            feats = self.backbone_fn(xs)
            logits = self.model.head(feats)
        frac_epoch = self.epoch + (self.global_step % max(1, self.steps_per_epoch)) / max(1, self.steps_per_epoch)
        out = self.loss(logits.float(), y, teacher.logits if teacher else None, student_features=feats.float(),
                        teacher_features=teacher.features if teacher else None, index=idx,
                        epoch=frac_epoch)  # fmt: skip
        self.scaler.scale(out["loss"]).backward()
        if cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return {k: v.detach().float() for k, v in out.items()}

    def train_epoch(self) -> dict:
        self.model.train()
        self.loss.train()
        self.policy.on_train_mode(self.model)
        started, seen = time.perf_counter(), 0
        sums: dict[str, torch.Tensor] = {}
        n, last = 0, float("nan")
        lr = self.optimizer.param_groups[0]["lr"]
        title = f"stage {self.policy.phase + 1} epoch {self.epoch + 1}/{self.cfg.epochs}"
        with epoch_progress(title, self.steps_per_epoch, 0, self.show) as update:
            for x, sizes, y, _soft, idx in self.train_loader():
                terms = self.step(x, sizes, y, idx)
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v
                n += 1
                seen += x.shape[0]
                self.global_step += 1
                if n % SYNC_EVERY == 0:
                    last = float(sums["loss"]) / n
                    if not math.isfinite(last):
                        raise FertrainError(f"non-finite loss at step {self.global_step}; lower --lr or check the data")
                update(images=x.shape[0], loss=last, lr=lr)
        elapsed = time.perf_counter() - started
        self.total_sec += elapsed
        means = {k: float(v) / max(1, n) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise FertrainError(f"non-finite loss in epoch {self.epoch + 1}; lower --lr or check the data")
        task = means.get("task", means["loss"])
        rec = {"train_loss": means["loss"], "train_task_loss": task,
               "train_distill_loss": means["loss"] - self.ce_weight * task, "lr": lr,
               "epoch_sec": round(elapsed, 3), "img_per_sec": round(seen / max(elapsed, 1e-9), 1)}  # fmt: skip
        rec.update({f"train_{k}": v for k, v in means.items() if k not in ("loss", "task", "distill")})
        return rec

    # --- evaluation and records ------------------------------------------------------------
    def evaluate_set(self, dataset: ManifestFaces) -> dict:
        loader = face_loader(dataset, batch_size=self.cfg.batch_size * 2, workers=self.cfg.workers,
                             device=self.device)  # fmt: skip
        logits, labels, _ = collect_logits(self.model, loader, self.device, self.spec, amp=self.cfg.amp,
                                           channels_last=self.cfg.channels_last)  # fmt: skip
        metrics = evaluate_logits(logits, labels)
        metrics["auc"] = macro_auc(logits, labels)
        return metrics

    def record(self, train: dict, val: dict | None) -> dict:
        trainable, total = self.policy.trainable_counts()
        phase = self.policy.phases[self.policy.phase]
        rec = {"epoch": self.epoch + 1, "stage": self.policy.phase + 1, "phase": phase.title,
               "global_step": self.global_step, "trainable_params": trainable, "total_params": total, **train,
               "total_sec": round(self.total_sec, 3)}  # fmt: skip
        if val is not None:
            cal = val["calibration"]
            rec.update({"val_loss": val["nll"], "val_acc": val["accuracy"], "val_auc": val["auc"],
                        "val_macro_f1": val["macro_f1"], "val_ece": cal["raw"]["ece"],
                        "temperature": cal["fit"]["temperature"], "val_per_class": val["per_class"],
                        "val_confusion_matrix": val["confusion_matrix"]})  # fmt: skip
        self.history.append(rec)
        write_histories(self.out, self.history)
        return rec

    def best_payload(self, metrics: dict | None, temperature: float) -> dict:
        return {"format": CHECKPOINT_FORMAT + "-best", "model": self.model.state_dict(), "config": self.cfg.to_dict(),
                "class_names": list(CLASS_NAMES), "preprocess": self.spec.to_dict(), "epoch": self.epoch + 1,
                "stage": self.policy.phase + 1, "global_step": self.global_step, "temperature": temperature,
                "metrics": metrics or {}}  # fmt: skip

    def maybe_save_best(self, val: dict) -> list[str]:
        value, stage, saved = float(val[self.cfg.select_metric]), self.policy.phase + 1, []
        metrics = {k: val[k] for k in ("accuracy", "macro_f1", "auc", "nll")}
        payload = self.best_payload(metrics, val["calibration"]["fit"]["temperature"])
        if value > self.phase_best.get(stage, -math.inf):
            self.phase_best[stage] = value
            save_checkpoint(self.out / f"student_stage{stage}_best.pt", payload)
            saved.append(f"best stage {stage} model ({self.cfg.select_metric}: {value:.4f})")
        if value > self.best["metric"]:
            self.best = {"metric": value, "select_metric": self.cfg.select_metric, "epoch": self.epoch + 1,
                         "stage": stage, **metrics}  # fmt: skip
            save_checkpoint(self.out / BEST, payload)
        return saved

    def fit(self, until_epoch: int | None = None) -> StudentResult:
        """Train to the configured epochs (or stop after `until_epoch`, resumable later)."""
        self.start()
        if self.resumed_from is None:
            print_header(self.cfg, self.signal)
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        atomic_write_json(self.out / "preprocess.json", self.spec.to_dict())
        stop = min(self.cfg.epochs, until_epoch or self.cfg.epochs)
        while self.epoch < stop:
            self.begin_epoch()
            train = self.train_epoch()
            val = self.evaluate_set(self.val_set) if self.val_set is not None else None
            if isinstance(self.scheduler, ReduceLROnPlateau) and val is not None:
                self.scheduler.step(val["auc"])
            rec = self.record(train, val)
            saved = self.maybe_save_best(val) if val is not None else []
            print_epoch(rec, self.cfg.epochs, saved)
            self.epoch += 1
            save_checkpoint(self.out / CHECKPOINT_LAST, self.state())
        result = StudentResult(self.out, self.history, self.best, resumed_from_epoch=self.resumed_from)
        if self.epoch < self.cfg.epochs:
            return result
        return self.finish(result)

    def finish(self, result: StudentResult) -> StudentResult:
        save_checkpoint(self.out / FINAL, self.best_payload(None, 1.0) | {"epoch": self.epoch})
        console.print(f"✓ Final model saved to {self.out / FINAL}", highlight=False, soft_wrap=True)
        if not (self.out / BEST).is_file():  # no validation split: the last weights are the result
            save_checkpoint(self.out / BEST, self.best_payload(None, 1.0) | {"epoch": self.epoch})
        if self.test_set is not None:
            final_state = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(load_checkpoint(self.out / BEST)["model"])
            test = self.evaluate_set(self.test_set)
            self.model.load_state_dict(final_state)
            result.test = {k: test[k] for k in ("n", "accuracy", "macro_f1", "auc", "nll", "per_class",
                                                "confusion_matrix")}  # fmt: skip
        trainable, total = self.policy.trainable_counts()
        result.params = {"total": total, "trainable_at_end": trainable,
                         "student": sum(p.numel() for p in self.model.parameters())}  # fmt: skip
        atomic_write_json(self.out / "results.json", {
            "config": self.cfg.to_dict(), "teacher_signal": getattr(self.signal, "describe", None),
            "strategy": {"name": self.cfg.strategy, "groups": [g.name for g in self.policy.groups],
                         "phases": [{"start_epoch": p.start_epoch, "trainable": sorted(self.policy.groups[i].name
                                     for i in p.trainable), "lr": p.lr, "scheduler": p.scheduler, "title": p.title}
                                    for p in self.policy.phases]},
            "params": result.params, "best_val": self.best, "test": result.test,
            "history": [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in self.history],
            "total_sec": round(self.total_sec, 3),
        })  # fmt: skip
        console.print(f"✓ Training history saved to {self.out / 'training_history_two_stage.json'}", highlight=False,
                      soft_wrap=True)  # fmt: skip
        console.print(f"{RULE}\n{self.cfg.strategy.upper()} DISTILLATION COMPLETE\n{RULE}", highlight=False)
        return result


# --- console and files ---------------------------------------------------------------------
def print_header(cfg: StudentConfig, signal) -> None:
    source = (f"soft labels {cfg.softlabels}" if cfg.softlabels else f"teacher {cfg.teacher} (online, frozen)"
              if cfg.teacher else "none (labels only)")  # fmt: skip
    console.print(f"{RULE}\n{cfg.strategy.upper()} STUDENT DISTILLATION TRAINING ({cfg.loss.upper()})\n{RULE}\n"
                  f"Device: {resolve_device(cfg.device)}\nStudent: {cfg.backbone} @ {cfg.img_size} px\n"
                  f"Teacher signal: {source}", highlight=False, soft_wrap=True)  # fmt: skip


def print_phase(policy: UnfreezePolicy, phase, trainable: int, total: int, cfg: StudentConfig) -> None:
    frozen = [g.name for i, g in enumerate(policy.groups) if i not in policy.unfrozen]
    opened = [g.name for i, g in enumerate(policy.groups) if i in policy.unfrozen]
    console.print(f"{RULE}\nSTAGE {policy.phase + 1}: {phase.title.upper()}\n{RULE}", highlight=False)
    if frozen:
        console.print(f"✓ Frozen: {', '.join(frozen)}" + (" (BatchNorm statistics fixed)" if cfg.freeze_bn else ""),
                      highlight=False, soft_wrap=True)  # fmt: skip
    if opened:
        console.print(f"✓ Unfrozen: {', '.join(opened)}", highlight=False, soft_wrap=True)
    console.print(f"✓ Trainable parameters: {trainable:,} / {total:,} ({100 * trainable / max(1, total):.1f} %)\n"
                  f"✓ Stage {policy.phase + 1} optimizer: {cfg.opt} (lr={phase.lr:g}, {phase.scheduler})",
                  highlight=False, soft_wrap=True)  # fmt: skip


def print_epoch(rec: dict, epochs: int, saved: list[str]) -> None:
    line = (f"Stage {rec['stage']} - Epoch {rec['epoch']}/{epochs} | Train Loss: {rec['train_loss']:.4f} "
            f"(distill: {rec['train_distill_loss']:.4f}, task: {rec['train_task_loss']:.4f}) "
            f"{rec['img_per_sec']:,.0f} img/s")  # fmt: skip
    if "val_acc" in rec:
        line += (f"\n          | Val Loss: {rec['val_loss']:.4f} | Acc: {rec['val_acc']:.4f} "
                 f"| AUC: {rec['val_auc']:.4f} | macro-F1: {rec['val_macro_f1']:.4f}")  # fmt: skip
    console.print(line, highlight=False, soft_wrap=True)
    for s in saved:
        console.print(f"  ✓ Saved {s}", highlight=False, soft_wrap=True)


TWO_STAGE_KEYS = ("stage", "train_loss", "train_distill_loss", "train_task_loss", "val_loss", "val_acc", "val_auc",
                  "val_macro_f1")  # fmt: skip


def write_histories(out: Path, history: list[dict]) -> None:
    """history.json (full records), training_history_two_stage.json (seed 000's lists),
    metrics.json / metrics.csv (seed 004's per-epoch scalars)."""
    atomic_write_json(out / "history.json", history)
    atomic_write_json(out / "training_history_two_stage.json",
                      {k: [r.get(k) for r in history] for k in ("epoch", *TWO_STAGE_KEYS)})  # fmt: skip
    scalars = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in history]
    atomic_write_json(out / "metrics.json", scalars)
    fields = list(dict.fromkeys(k for r in scalars for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in scalars:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def train_student(cfg: StudentConfig, *, show_progress: bool = True, command: str | None = None,
                  until_epoch: int | None = None) -> StudentResult:  # fmt: skip
    """Train (or resume) one student run under its lock, then export it to ONNX."""
    if not cfg.manifest:
        raise ConfigError("--manifest is required")
    out = student_output_dir(cfg)
    policy = SourceFilter(include_sources=list(cfg.include_sources), exclude_sources=list(cfg.exclude_sources),
                          splits=sorted({cfg.train_split, cfg.val_split, cfg.test_split}))  # fmt: skip
    with open_run(out, seed=cfg.seed, manifest=cfg.manifest, source_filter=policy,
                  recover_stale=cfg.recover_stale_lock, allow_manifest_change=cfg.force,
                  command=command) as run:  # fmt: skip
        trainer = StudentTrainer(cfg, run, show_progress=show_progress)
        result = trainer.fit(until_epoch)
        if result.params and not cfg.skip_onnx:
            from fertrain.export.onnx import export_onnx

            result.onnx = export_onnx(out)
        return result
