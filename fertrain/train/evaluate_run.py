"""`fertrain teacher --evaluate-only`: evaluate a run's best.pt on any manifest split."""

from __future__ import annotations

from pathlib import Path


def evaluate_run(run_dir: str | Path, manifest_path: str | Path, split: str = "test", *, device: str = "auto",
                 batch_size: int = 128, workers: int = 4, recover_stale: bool = False) -> dict:  # fmt: skip
    """The run as a one-member teacher: same metrics, JSON and confusion PNG as `fertrain evaluate`."""
    from fertrain.ensemble.evaluate import evaluate_teacher

    return evaluate_teacher(run_dir, manifest_path, split, device=device, batch_size=batch_size, workers=workers,
                            recover_stale=recover_stale)  # fmt: skip
