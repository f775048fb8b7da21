"""Calibration maths: temperature scaling and the metrics that judge it (ECE, MCE, Brier, NLL), and
a model's temperatures per test-time augmentation.

Names are imported from their submodules on first use (see `fertrain.lazy`): ONNX serving reads
per-TTA temperatures without loading torch."""

from fertrain.lazy import lazy_exports

_EXPORTS = {
    "brier_score": "metrics", "calibration_report": "metrics", "debiased_ece": "metrics",
    "ece_noise_floor": "metrics",
    "expected_calibration_error": "metrics", "max_calibration_error": "metrics", "nll": "metrics",
    "per_class_ece": "metrics", "reliability": "metrics", "PerClassFit": "temperature",
    "TemperatureFit": "temperature", "fit_per_class_temperature": "temperature", "fit_temperature": "temperature",
    "scale_logits": "temperature", "recorded_temperatures": "per_tta", "temperature_for": "per_tta",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
