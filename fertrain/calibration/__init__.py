"""Calibration maths: temperature scaling and the metrics that judge it (ECE, MCE, Brier, NLL)."""

from fertrain.calibration.metrics import (
    brier_score,
    calibration_report,
    ece_noise_floor,
    expected_calibration_error,
    max_calibration_error,
    nll,
    per_class_ece,
    reliability,
)
from fertrain.calibration.temperature import (
    PerClassFit,
    TemperatureFit,
    fit_per_class_temperature,
    fit_temperature,
    scale_logits,
)

__all__ = [
    "PerClassFit", "TemperatureFit", "brier_score", "calibration_report", "ece_noise_floor",
    "expected_calibration_error",
    "fit_per_class_temperature", "fit_temperature", "max_calibration_error", "nll", "per_class_ece", "reliability",
    "scale_logits",
]  # fmt: skip
