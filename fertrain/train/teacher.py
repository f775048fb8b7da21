"""Teacher training, Stage A/B (seed 002): manifest-driven, ArcFace warmup + margin ramp,
step-based warmup/cosine LR, resumable at any step, evaluated and calibrated every epoch.

    from fertrain.train import resolve_config, train_teacher
    result = train_teacher(resolve_config({"manifest": "m.parquet", "epochs": 10}))
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from timm.optim import create_optimizer_v2
from torch.utils.data import DataLoader

from fertrain.atomic import atomic_write_json, atomic_write_text
from fertrain.console import console
from fertrain.data import (
    AugmentConfig,
    ManifestFaces,
    PreprocessSpec,
    augment_batch,
    epoch_order,
    face_loader,
    step_generator,
)
from fertrain.data.order import epoch_length
from fertrain.errors import ConfigError, FertrainError
from fertrain.labels import CLASS_NAMES, NUM_CLASSES
from fertrain.manifests import SourceFilter
from fertrain.models import build_model, normalization_of
from fertrain.runs import Run, open_run
from fertrain.train.checkpoint import (
    BEST,
    CHECKPOINT_LAST,
    check_resume_config,
    load_checkpoint,
    rng_state,
    run_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from fertrain.train.config import TeacherConfig, output_dir_of
from fertrain.train.evaluate import autocast_for, collect_logits, evaluate_logits
from fertrain.train.losses import class_weights, teacher_loss
from fertrain.train.progress import epoch_progress
from fertrain.train.schedules import build_lr_scheduler, margin_at_step, set_lr_for_step

CHECKPOINT_FORMAT = "fertrain-teacher-v1"
SYNC_EVERY = 10  # optimizer steps between reading the loss on the host (a read stalls the GPU queue)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TeacherResult:
    output_dir: Path
    history: list[dict]
    best_macro_f1: float
    global_step: int
    onnx: dict | None = None
    resumed_from_step: int | None = None
    extra: dict = field(default_factory=dict)


class TeacherTrainer:
    def __init__(self, cfg: TeacherConfig, run: Run, *, show_progress: bool = True):
        self.cfg, self.run, self.show = cfg, run, show_progress
        self.out = run.output_dir
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        rows = run.data.rows  # type: ignore[union-attr]
        self.train_rows = rows[rows["split"] == cfg.train_split].reset_index(drop=True)
        self.val_rows = rows[rows["split"] == cfg.val_split].reset_index(drop=True)
        if len(self.train_rows) == 0:
            raise ConfigError(f"no '{cfg.train_split}' rows after the source filter in {cfg.manifest}")
        self.model = build_model(cfg.backbone, head=cfg.head, arcface_s=cfg.arcface_s, pretrained=cfg.pretrained,
                                 initial_checkpoint=cfg.initial_checkpoint).to(self.device)  # fmt: skip
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        mean, std = normalization_of(self.model)
        self.spec = PreprocessSpec(img_size=int(cfg.img_size or 0), clahe=cfg.clahe, mean=mean, std=std)
        self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.augment.items()})
        manifest = run.data.manifest  # type: ignore[union-attr]
        self.train_set = ManifestFaces(manifest, self.train_rows, self.spec)
        self.val_set = ManifestFaces(manifest, self.val_rows, self.spec) if len(self.val_rows) else None
        self.labels = self.train_set.labels
        self.micro_per_epoch = epoch_length(self.labels, cfg.balanced_min_per_class) // cfg.batch_size
        self.steps_per_epoch = self.micro_per_epoch // cfg.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(f"--batch-size {cfg.batch_size} x --grad-accum-steps {cfg.grad_accum_steps} is larger "
                              f"than one epoch of {len(self.train_rows)} training rows")  # fmt: skip
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = create_optimizer_v2(self.model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = build_lr_scheduler(self.optimizer, total_steps=self.total_steps,
                                            warmup_steps=round(cfg.lr_warmup_epochs * self.steps_per_epoch),
                                            min_lr=cfg.min_lr)  # fmt: skip
        fp16 = cfg.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        w = class_weights(self.labels, NUM_CLASSES, cfg.class_weights)
        self.class_w = w.to(self.device) if w is not None else None
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        # Fuse the augmentation's elementwise passes on GPUs; on CPUs compiling costs more than it saves.
        self.fused_augment = self.device.type == "cuda" and cfg.fused_augment
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best_f1 = -1.0
        self.total_sec = 0.0
        self.running = {"loss_sum": 0.0, "losses": 0, "images": 0}  # this epoch so far (survives a resume)
        self.resumed_from: int | None = None

    # --- state -----------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch, "global_step": self.global_step, "rng": rng_state(),
            "config": self.cfg.to_dict(), "class_names": list(CLASS_NAMES), "preprocess": self.spec.to_dict(),
            "best_macro_f1": self.best_f1, "history": self.history, "total_sec": self.total_sec,
            "running": dict(self.running),
            "manifest_sha256": self.run.data.manifest.sha256,  # type: ignore[union-attr]
        }  # fmt: skip

    def restore(self, ckpt: dict, path: Path) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise FertrainError(f"{path}: not a fertrain teacher checkpoint (format {ckpt.get('format')!r})")
        check_resume_config(ckpt["config"], self.cfg.to_dict(), path, self.cfg.force)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]
        self.best_f1, self.history, self.total_sec = ckpt["best_macro_f1"], ckpt["history"], ckpt["total_sec"]
        self.running = dict(ckpt["running"])
        set_rng_state(ckpt["rng"])
        self.resumed_from = self.global_step

    def start(self) -> None:
        """Resume from --resume or the run's own checkpoint_last.pt; else --init-from weights."""
        last = self.out / CHECKPOINT_LAST
        source = Path(self.cfg.resume) if self.cfg.resume else (last if last.is_file() else None)
        if source is not None:
            self.restore(load_checkpoint(source), source)
            console.print(f"resuming {source} at epoch {self.epoch}, step {self.global_step}", soft_wrap=True)
            return
        if self.cfg.init_from:
            path = run_checkpoint(self.cfg.init_from, "--init-from")
            state = load_checkpoint(path)["model"]
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("head.") for k in missing):
                raise FertrainError(f"--init-from {path}: weights do not fit {self.cfg.backbone} "
                                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})")  # fmt: skip
            console.print(f"initialized from {path} (new optimizer and schedule)", soft_wrap=True)

    def save_last(self) -> None:
        save_checkpoint(self.out / CHECKPOINT_LAST, self.state())

    # --- training --------------------------------------------------------------------
    def margin(self, step: int) -> float:
        if self.cfg.head != "arcface":
            return 0.0
        c = self.cfg
        return margin_at_step(step, self.steps_per_epoch, margin=c.arcface_m,
                              plain_warmup_epochs=c.plain_logits_warmup_epochs,
                              ramp_start_epoch=c.margin_ramp_start, ramp_end_epoch=c.margin_ramp_end)  # fmt: skip

    def train_loader(self, epoch: int, skip_micro: int) -> DataLoader:
        order = epoch_order(self.labels, seed=self.cfg.seed, epoch=epoch,
                            balanced_min_per_class=self.cfg.balanced_min_per_class)  # fmt: skip
        order = order[: self.micro_per_epoch * self.cfg.batch_size][skip_micro * self.cfg.batch_size :]
        return face_loader(self.train_set, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
                           device=self.device, order=order.tolist(), drop_last=True)  # fmt: skip

    def micro_step(self, x: torch.Tensor, sizes: torch.Tensor, y: torch.Tensor, soft: torch.Tensor, micro: int,
                   margin: float) -> torch.Tensor:  # fmt: skip
        """uint8 batch -> device -> augment + resize -> forward -> backward (scaled by the accumulation)."""
        cfg, accum = self.cfg, self.cfg.grad_accum_steps
        x, sizes, y, soft = (t.to(self.device, non_blocking=True) for t in (x, sizes, y, soft))
        g = step_generator(cfg.seed, self.global_step * accum + micro % accum, self.device)
        x = augment_batch(x, sizes, self.spec.img_size, self.augment, self.spec.mean, self.spec.std, g,
                          cfg.channels_last, fused=self.fused_augment)  # fmt: skip
        return self.model_step(x, y, soft, margin)

    def model_step(self, x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None, margin: float) -> torch.Tensor:
        """Forward and backward on a normalized batch already on the device."""
        with autocast_for(self.device, self.cfg.amp):
            logits = self.forward(x, y, margin)
        loss = teacher_loss(logits, y, soft, smoothing=self.cfg.smoothing, weights=self.class_w)
        self.scaler.scale(loss / self.cfg.grad_accum_steps).backward()
        return loss.detach()  # a tensor: reading it on the host would sync the GPU

    def optimizer_step(self) -> None:
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def train_epoch(self) -> dict:
        cfg, accum = self.cfg, self.cfg.grad_accum_steps
        self.model.train()
        started, run, seen = time.perf_counter(), self.running, 0
        loader = self.train_loader(self.epoch, self.step_in_epoch * accum)
        lr = set_lr_for_step(self.scheduler, self.global_step)
        margin = self.margin(self.global_step)
        title = f"stage {cfg.stage} epoch {self.epoch + 1}/{cfg.epochs}"
        pending: list[torch.Tensor] = []  # losses not yet read on the host
        last_loss = float("nan")

        def drain() -> None:
            nonlocal last_loss
            if pending:
                values = torch.stack(pending).float().cpu().tolist()
                pending.clear()
                if not all(math.isfinite(v) for v in values):
                    raise FertrainError(f"non-finite loss before step {self.global_step}; lower --lr or check the data")
                run["loss_sum"] += sum(values)
                run["losses"] += len(values)
                last_loss = values[-1]

        with epoch_progress(title, self.steps_per_epoch, self.step_in_epoch, self.show) as update:
            for micro, (x, sizes, y, soft, _idx) in enumerate(loader):
                loss = self.micro_step(x, sizes, y, soft, micro, margin)
                run["images"] += x.shape[0]
                seen += x.shape[0]
                if (micro + 1) % accum:
                    continue
                self.optimizer_step()
                pending.append(loss)
                self.global_step += 1
                self.step_in_epoch += 1
                if self.global_step % SYNC_EVERY == 0:
                    drain()
                update(images=x.shape[0] * accum, loss=last_loss, lr=lr, margin=margin)
                if cfg.checkpoint_every_steps and self.global_step % cfg.checkpoint_every_steps == 0:
                    drain()
                    self.total_sec += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_last()
                if self.step_in_epoch < self.steps_per_epoch:
                    lr = set_lr_for_step(self.scheduler, self.global_step)
                    margin = self.margin(self.global_step)
        drain()
        elapsed = time.perf_counter() - started
        self.total_sec += elapsed
        rec = {"lr": lr, "margin": margin, "train_loss": run["loss_sum"] / max(1, run["losses"]),
               "train_images": run["images"], "epoch_sec": round(elapsed, 3),
               "img_per_sec": round(seen / max(elapsed, 1e-9), 1)}  # fmt: skip
        self.running = {"loss_sum": 0.0, "losses": 0, "images": 0}
        return rec

    # --- evaluation and records ------------------------------------------------------
    def validate(self) -> dict | None:
        if self.val_set is None:
            return None
        loader = face_loader(self.val_set, batch_size=self.cfg.batch_size * 2, workers=self.cfg.workers,
                             device=self.device)  # fmt: skip
        logits, labels, _ = collect_logits(self.model, loader, self.device, self.spec,
                                           amp=self.cfg.amp, channels_last=self.cfg.channels_last)  # fmt: skip
        return evaluate_logits(logits, labels)

    def record(self, train: dict, val: dict | None) -> dict:
        rec = {"epoch": self.epoch + 1, "stage": self.cfg.stage, "global_step": self.global_step, **train,
               "total_sec": round(self.total_sec, 3)}  # fmt: skip
        if val is not None:
            cal = val["calibration"]
            rec.update({"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "val_nll": val["nll"],
                        "temperature": cal["fit"]["temperature"], "val_ece": cal["raw"]["ece"],
                        "val_ece_scaled": cal["scaled"]["ece"], "val_brier": cal["raw"]["brier"],
                        "val_brier_scaled": cal["scaled"]["brier"],
                        "val_nll_scaled": cal["scaled"]["nll"], "val_per_class": val["per_class"],
                        "val_confusion_matrix": val["confusion_matrix"]})  # fmt: skip
            atomic_write_json(self.out / "calibration.json", {"epoch": self.epoch + 1, "split": self.cfg.val_split,
                                                              **cal})  # fmt: skip
        self.history.append(rec)
        atomic_write_json(self.out / "history.json", self.history)
        write_summary_csv(self.out / "summary.csv", self.history)
        return rec

    def save_best(self, val: dict) -> None:
        self.best_f1 = val["macro_f1"]
        save_checkpoint(self.out / BEST, {
            "format": CHECKPOINT_FORMAT + "-best", "model": self.model.state_dict(), "config": self.cfg.to_dict(),
            "class_names": list(CLASS_NAMES), "preprocess": self.spec.to_dict(), "epoch": self.epoch + 1,
            "global_step": self.global_step, "temperature": val["calibration"]["fit"]["temperature"],
            "metrics": {k: val[k] for k in ("accuracy", "macro_f1", "nll")},
        })  # fmt: skip

    def fit(self) -> TeacherResult:
        self.start()
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        atomic_write_json(self.out / "preprocess.json", self.spec.to_dict())
        while self.epoch < self.cfg.epochs:
            train = self.train_epoch()
            last_epoch = self.epoch + 1 == self.cfg.epochs
            val = self.validate() if ((self.epoch + 1) % self.cfg.eval_every == 0 or last_epoch) else None
            rec = self.record(train, val)
            if val is not None and val["macro_f1"] > self.best_f1:
                self.save_best(val)
            self.epoch += 1
            self.step_in_epoch = 0
            self.save_last()
            print_epoch(rec)
        if not (self.out / BEST).is_file():  # no validation split: the last weights are the result
            save_checkpoint(self.out / BEST, {"format": CHECKPOINT_FORMAT + "-best", "model": self.model.state_dict(),
                                              "config": self.cfg.to_dict(), "class_names": list(CLASS_NAMES),
                                              "preprocess": self.spec.to_dict(), "epoch": self.epoch,
                                              "global_step": self.global_step, "temperature": 1.0,
                                              "metrics": {}})  # fmt: skip
        return TeacherResult(self.out, self.history, self.best_f1, self.global_step,
                             resumed_from_step=self.resumed_from)


def print_epoch(rec: dict) -> None:
    val = (f" val acc {rec['val_accuracy']:.4f} macro-F1 {rec['val_macro_f1']:.4f} nll {rec['val_nll']:.4f} "
           f"ECE {rec['val_ece']:.4f}->{rec['val_ece_scaled']:.4f} (T={rec['temperature']:.3f})"
           if "val_accuracy" in rec else "")  # fmt: skip
    console.print(f"epoch {rec['epoch']} step {rec['global_step']} loss {rec['train_loss']:.4f} lr {rec['lr']:.2e} "
                  f"margin {rec['margin']:.3f} {rec['img_per_sec']:,.0f} img/s {rec['epoch_sec']:.1f}s{val}",
                  highlight=False, soft_wrap=True)  # fmt: skip


SUMMARY_FIELDS = ("epoch", "stage", "global_step", "train_loss", "val_nll", "val_accuracy", "val_macro_f1",
                  "val_ece", "val_ece_scaled", "temperature", "lr", "margin", "epoch_sec", "img_per_sec")  # fmt: skip


def write_summary_csv(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in rec.items()})
    atomic_write_text(path, buf.getvalue())


def train_teacher(cfg: TeacherConfig, *, show_progress: bool = True, command: str | None = None) -> TeacherResult:
    """Train (or resume) one teacher run under its lock, with alignment and environment reports."""
    if not cfg.manifest:
        raise ConfigError("--manifest is required")
    out = output_dir_of(cfg)
    if cfg.init_from and (out / CHECKPOINT_LAST).is_file():
        console.print(f"[yellow]note:[/] {out} already has {CHECKPOINT_LAST}; resuming it, --init-from is ignored",
                      soft_wrap=True)  # fmt: skip
    policy = SourceFilter(include_sources=list(cfg.include_sources), exclude_sources=list(cfg.exclude_sources or []),
                          splits=sorted({cfg.train_split, cfg.val_split}))  # fmt: skip
    with open_run(out, seed=cfg.seed, manifest=cfg.manifest, source_filter=policy,
                  recover_stale=cfg.recover_stale_lock, allow_manifest_change=cfg.force,
                  command=command) as run:  # fmt: skip
        trainer = TeacherTrainer(cfg, run, show_progress=show_progress)
        result = trainer.fit()
        if not cfg.skip_onnx:
            from fertrain.export.onnx import export_onnx

            result.onnx = export_onnx(out)
        return result
