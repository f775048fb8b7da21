"""What every throughput benchmark reports: end-to-end img/s against the model-only ceiling."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class BenchResult:
    device: str
    backbone: str
    img_size: int
    batch_size: int
    workers: int
    model_only_img_s: float
    end_to_end_img_s: float

    @property
    def ratio(self) -> float:
        """End-to-end over model-only: 1.0 means the data path never makes the GPU wait."""
        return round(self.end_to_end_img_s / self.model_only_img_s, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    def summary(self) -> str:
        return (f"model-only {self.model_only_img_s:,.0f} img/s, end-to-end {self.end_to_end_img_s:,.0f} img/s, "
                f"ratio {self.ratio:.3f}")  # fmt: skip
