"""Checkpoints: everything needed to resume exactly, written atomically, loaded weights_only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from fertrain.atomic import atomic_torch_save
from fertrain.errors import ConfigError, FertrainError, InputError
from fertrain.serialization import load_torch_file

CHECKPOINT_LAST = "checkpoint_last.pt"
BEST = "best.pt"
# Changing any of these changes the data order, the schedule or the model: not a resume.
SCHEDULE_KEYS = ("epochs", "lr", "min_lr", "lr_warmup_epochs", "batch_size", "grad_accum_steps", "weight_decay",
                 "balanced_min_per_class", "seed", "backbone", "head", "img_size", "arcface_m", "arcface_s",
                 "plain_logits_warmup_epochs", "margin_ramp_start", "margin_ramp_end")  # fmt: skip


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": random.getstate(),
    }  # fmt: skip


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def run_checkpoint(ref: str | Path, what: str = "run") -> Path:
    """A run directory's best.pt (else checkpoint_last.pt), or a checkpoint file as given."""
    p = Path(ref)
    if p.is_dir():
        for name in (BEST, CHECKPOINT_LAST):
            if (p / name).is_file():
                return p / name
        raise ConfigError(f"{what} {p}: no {BEST} or {CHECKPOINT_LAST} in that run directory")
    if not p.is_file():
        raise ConfigError(f"{what} {p}: no such run directory or checkpoint")
    return p


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path) -> dict:
    ckpt = load_torch_file(path, "checkpoint")
    if not isinstance(ckpt, dict):
        raise InputError(path, "not a checkpoint (expected a dict)", kind="checkpoint")
    return ckpt


def schedule_differences(saved: dict, current: dict, keys: tuple[str, ...] = SCHEDULE_KEYS) -> list[str]:
    return [f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]  # fmt: skip


def check_resume_config(saved: dict, current: dict, path: Path, force: bool,
                        keys: tuple[str, ...] = SCHEDULE_KEYS) -> None:  # fmt: skip
    """Refuse to resume when a schedule-relevant option (`keys`) changed, unless forced."""
    diffs = schedule_differences(saved, current, keys)
    if diffs and not force:
        raise FertrainError(
            f"refusing to resume {path}: the schedule-relevant config changed ({'; '.join(diffs)}). "
            "Use a new --output-dir, or --force to resume anyway"
        )
