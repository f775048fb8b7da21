"""What a student run prints and writes beyond the engine's records: the console layout of
two-stage training (phase banners with trainable-parameter counts, per-epoch loss terms),
training_history_two_stage.json (per-epoch lists), results.json and the test confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fertrain.atomic import atomic_write_json
from fertrain.console import console
from fertrain.labels import CLASS_NAMES
from fertrain.plots import plot_confusion_matrix
from fertrain.student.config import StudentConfig
from fertrain.student.freezing import UnfreezePolicy

FINAL = "student_final.pt"
TWO_STAGE_HISTORY = "training_history_two_stage.json"
RULE = "=" * 72
# per-epoch lists in training_history_two_stage.json: file key <- history key
TWO_STAGE_KEYS = {"epoch": "epoch", "stage": "stage", "train_loss": "train_loss",
                  "train_distill_loss": "train_distill_loss", "train_task_loss": "train_task_loss",
                  "val_loss": "val_nll", "val_acc": "val_accuracy", "val_auc": "val_auc",
                  "val_macro_f1": "val_macro_f1"}  # fmt: skip


def _title(cfg: StudentConfig) -> str:
    strategy = "" if cfg.strategy == "none" else f"{cfg.strategy.upper()} "
    return f"{strategy}STUDENT DISTILLATION ({cfg.loss['name'].upper()})"


def print_header(cfg: StudentConfig, device: torch.device) -> None:
    source = (f"soft labels {cfg.softlabels}" if cfg.softlabels else f"teacher {cfg.teacher} (online, frozen)"
              if cfg.teacher else "none (labels only)")  # fmt: skip
    console.print(f"{RULE}\n{_title(cfg)}\n{RULE}\nDevice: {device}\nStudent: {cfg.backbone} @ {cfg.img_size} px\n"
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
    if "val_accuracy" in rec:
        line += (f"\n          | Val Loss: {rec['val_nll']:.4f} | Acc: {rec['val_accuracy']:.4f} "
                 f"| AUC: {rec['val_auc']:.4f} | macro-F1: {rec['val_macro_f1']:.4f}")  # fmt: skip
    console.print(line, highlight=False, soft_wrap=True)
    for s in saved:
        console.print(f"  ✓ Saved {s}", highlight=False, soft_wrap=True)


@dataclass
class StudentOutcome:
    """What a finished student run reports."""

    out: Path
    cfg: StudentConfig
    history: list[dict]
    best: dict
    test: dict | None
    params: dict
    teacher_signal: dict | None
    policy: UnfreezePolicy
    total_sec: float


def write_results(t: StudentOutcome) -> None:
    """results.json (config, teacher signal, strategy, parameters, best val, test), the per-epoch
    lists of training_history_two_stage.json and, with a test split, its confusion matrix."""
    out, cfg = t.out, t.cfg
    console.print(f"✓ Final model saved to {out / FINAL}", highlight=False, soft_wrap=True)
    lists = {k: [r.get(src) for r in t.history] for k, src in TWO_STAGE_KEYS.items()}
    atomic_write_json(out / TWO_STAGE_HISTORY, lists)
    if t.test is not None:
        test = t.test
        plot_confusion_matrix(test["confusion_matrix"], CLASS_NAMES, out / "confusion_test.png",
                              title=f"{out.name} on {cfg.test_split}: acc {test['accuracy']:.3f}, "
                                    f"macro-F1 {test['macro_f1']:.3f}")  # fmt: skip
    policy = t.policy
    atomic_write_json(out / "results.json", {
        "config": cfg.to_dict(), "teacher_signal": t.teacher_signal,
        "strategy": {"name": cfg.strategy, "groups": [g.name for g in policy.groups],
                     "phases": [{"start_epoch": p.start_epoch, "trainable": sorted(policy.groups[i].name
                                 for i in p.trainable), "lr": p.lr, "scheduler": p.scheduler, "title": p.title}
                                for p in policy.phases]},
        "params": t.params, "best_val": t.best, "test": t.test,
        "history": [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in t.history],
        "total_sec": round(t.total_sec, 3),
    })  # fmt: skip
    console.print(f"✓ Training history saved to {out / TWO_STAGE_HISTORY}", highlight=False, soft_wrap=True)
    console.print(f"{RULE}\n{_title(cfg)} COMPLETE\n{RULE}", highlight=False)
