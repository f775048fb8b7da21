"""The checkpoint files of a run directory: names, atomic saving, safe loading, and finding
the weights a command should use (best.pt, else checkpoint_last.pt)."""

from __future__ import annotations

from pathlib import Path

from fertrain.atomic import atomic_torch_save
from fertrain.errors import ConfigError, InputError
from fertrain.serialization import load_torch_file

CHECKPOINT_LAST = "checkpoint_last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path) -> dict:
    ckpt = load_torch_file(path, "checkpoint")
    if not isinstance(ckpt, dict):
        raise InputError(path, "not a checkpoint (expected a dict)", kind="checkpoint")
    return ckpt


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
