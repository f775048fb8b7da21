"""Optional TensorBoard logging (`--log tensorboard`; the `tensorboard` extra).

Per step: every loss term, the LR (and any other schedule value such as the ArcFace margin)
and img/s, written when the trainer reads its losses from the device (every few steps, so no
extra GPU sync). Per epoch: validation metrics, ECE before and after temperature scaling,
and the confusion matrix and reliability diagram as images. CSV/JSON files stay the record.
"""

from __future__ import annotations

from pathlib import Path

from fertrain.labels import CLASS_NAMES
from fertrain.plots import confusion_figure, reliability_figure

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLogger:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # optional dependency, checked at config time

        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def steps(self, first_step: int, terms: dict[str, list[float]]) -> None:
        """Loss terms of consecutive optimizer steps starting at `first_step` (1-based)."""
        for name, values in terms.items():
            for i, v in enumerate(values):
                self.writer.add_scalar(f"train/{name}", v, first_step + i)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, v in values.items():
            self.writer.add_scalar(f"train/{name}", v, step)

    def epoch(self, rec: dict, val: dict | None) -> None:
        step = rec["global_step"]
        for key, v in rec.items():
            if key.startswith(("val_", "ema_val_")) and isinstance(v, int | float):
                self.writer.add_scalar(f"val/{key.removeprefix('val_')}", v, step)
        self.writer.add_scalar("epoch/train_img_per_sec", rec["img_per_sec"], step)
        if val is not None:
            title = f"epoch {rec['epoch']}"
            self.writer.add_figure("val/confusion_matrix", confusion_figure(val["confusion_matrix"], CLASS_NAMES,
                                                                            title), step)  # fmt: skip
            cal = val["calibration"]
            self.writer.add_figure("val/reliability", reliability_figure(cal["raw"], cal["scaled"], title), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_logger(kind: str, run_dir: Path) -> TensorBoardLogger | None:
    return TensorBoardLogger(run_dir) if kind == "tensorboard" else None
