"""Calibration maths: temperature scaling and the metrics that judge it (ECE, Brier, NLL)."""

from fertrain.calibration.metrics import brier_score, calibration_report, expected_calibration_error, nll, reliability
from fertrain.calibration.temperature import TemperatureFit, fit_temperature

__all__ = [
    "TemperatureFit", "brier_score", "calibration_report", "expected_calibration_error", "fit_temperature", "nll",
    "reliability",
]  # fmt: skip
