"""Checkpoint saving for a run: resume state, best weights, the K best evaluations, and the
random-number state that makes a resume draw exactly what an uninterrupted run would have."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from fertrain.runs.checkpoints import BEST, CHECKPOINT_LAST, save_checkpoint


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


class CheckpointSaver:
    """checkpoint_last.pt (resume state), best.pt (weights, by the selection metric) and, with
    `keep` > 0, the weights of the `keep` best evaluations as checkpoint-epochN.pt (timm's
    --checkpoint-hist); worse ones are deleted as better ones arrive. Its own state (which
    files are kept) travels in the resume state."""

    def __init__(self, out: Path, keep: int = 0):
        self.out, self.keep = out, keep
        self.kept: list[list] = []  # [metric, file name], best first

    def save_last(self, state: dict) -> None:
        save_checkpoint(self.out / CHECKPOINT_LAST, state)

    def save_best(self, weights: dict) -> None:
        save_checkpoint(self.out / BEST, weights)

    def offer(self, weights: dict, metric: float, epoch: int) -> str | None:
        """Keep these weights if they rank among the `keep` best; returns the file written."""
        if self.keep <= 0 or (len(self.kept) >= self.keep and metric <= self.kept[-1][0]):
            return None
        name = f"checkpoint-epoch{epoch}.pt"
        save_checkpoint(self.out / name, weights)
        self.kept = sorted([k for k in self.kept if k[1] != name] + [[metric, name]], key=lambda k: -k[0])
        for _, dropped in self.kept[self.keep :]:
            (self.out / dropped).unlink(missing_ok=True)
        self.kept = self.kept[: self.keep]
        return name

    def state_dict(self) -> dict:
        return {"kept": [list(k) for k in self.kept]}

    def load_state_dict(self, state: dict) -> None:
        self.kept = [list(k) for k in state.get("kept", [])]
