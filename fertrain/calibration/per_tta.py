"""A model's temperatures, one per --tta it was calibrated for (averaged crops are less confident
than one view, so each test-time augmentation gets its own). The same rules read a run's
calibration.json, an ensemble's JSON and an ONNX sidecar; NumPy-free and torch-free, for serving
ONNX models."""

from __future__ import annotations

Temperature = float | list[float]  # a scalar, or one per class


def ensemble_posthoc(temperature: Temperature, tta: str, temperatures: dict) -> dict:
    """What `fertrain calibrate` writes into an ensemble's JSON: the latest fit, the --tta it was
    fitted on and every --tta's fit. The rest of the JSON (members, weights, fusion) is the ensemble."""
    return {"temperature": temperature, "temperature_tta": tta, "temperatures": temperatures}


ENSEMBLE_POSTHOC_KEYS = tuple(ensemble_posthoc(1.0, "none", {}))


def recorded_temperatures(by_tta: dict | None, latest_tta: str | None, latest: Temperature | None) -> dict:
    """{tta: temperature} as a file records them: its "temperatures" map, or, for files written
    before there was one, its single latest fit (none at all when it names no --tta)."""
    if by_tta:
        return dict(by_tta)
    return {latest_tta: latest} if latest_tta is not None and latest is not None else {}


def temperature_for(tta: str | None, by_tta: dict, default: Temperature,
                    default_tta: str | None) -> tuple[Temperature, str | None]:  # fmt: skip
    """(temperature, the --tta it was fitted on) to serve `tta`'s logits with: the one fitted on
    them when there is one, else the default, whose --tta then tells the caller it differs."""
    return (by_tta[tta], tta) if tta in by_tta else (default, default_tta)
