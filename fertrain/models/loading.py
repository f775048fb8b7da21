"""A trained run's model, rebuilt from the model spec its checkpoints carry.

Every checkpoint fertrain writes stores `model_spec = {backbone, head, head_kwargs}`, so
loading needs nothing from the trainer's configuration (teacher or student alike).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fertrain.calibration.per_tta import recorded_temperatures
from fertrain.errors import InputError
from fertrain.models.factory import FerNet, build_model
from fertrain.runs.checkpoints import load_checkpoint, run_checkpoint


def model_spec(backbone: str, head: str, head_kwargs: dict | None = None) -> dict:
    return {"backbone": backbone, "head": head, "head_kwargs": dict(head_kwargs or {})}


def build_from_spec(spec: dict) -> FerNet:
    return build_model(spec["backbone"], head=spec["head"], head_kwargs=spec.get("head_kwargs"))


CALIBRATION = "calibration.json"


@dataclass(frozen=True)
class ServingTemperature:
    value: float | list[float]  # a scalar, or one per class
    source: str  # where it comes from, for reports
    tta: str  # the --tta whose logits it was fitted on


TRAINING_TTA = "none"  # the trainer fits its temperature on single-view validation logits


def serving_temperatures(run_dir: Path, ckpt: dict, ckpt_name: str = "best.pt"
                         ) -> tuple[ServingTemperature, dict[str, ServingTemperature]]:  # fmt: skip
    """A run's temperatures: (the one it serves with by default, the one fitted for each --tta).

    The default is the latest post-hoc one `fertrain calibrate` wrote (calibration.json with
    "posthoc": true, fitted on the logits of its `--tta`), else the one fitted on single-view
    validation logits during training (stored in the checkpoint). Each `fertrain calibrate --tta X`
    adds X's to calibration.json's "temperatures", so one run serves single views and ten-crop
    each with its own; the training fit stands for "none" until a post-hoc one replaces it."""
    training = ServingTemperature(float(ckpt.get("temperature", 1.0)), f"{ckpt_name} (validation, training)",
                                  TRAINING_TTA)  # fmt: skip
    latest_tta, posthoc = posthoc_temperatures(run_dir)
    fits = {TRAINING_TTA: training}
    fits.update({tta: ServingTemperature(value, f"{CALIBRATION} (fertrain calibrate --tta {tta})", tta)
                 for tta, value in posthoc.items()})  # fmt: skip
    return (fits[latest_tta] if posthoc else training), fits


def posthoc_temperatures(run_dir: Path) -> tuple[str | None, dict]:
    """(the latest --tta, {tta: temperature}) that `fertrain calibrate` recorded in the run's
    calibration.json; (None, {}) when nobody calibrated it (the trainer's calibration.json is a report)."""
    cal = Path(run_dir) / CALIBRATION
    data = json.loads(cal.read_text(encoding="utf-8")) if cal.is_file() else {}
    if not data.get("posthoc"):
        return None, {}
    latest_tta = data.get("tta", "none")
    return latest_tta, recorded_temperatures(data.get("temperatures"), latest_tta, data["temperature"])


def serving_temperature(run_dir: Path, ckpt: dict, ckpt_name: str = "best.pt",
                        tta: str | None = None) -> ServingTemperature:  # fmt: skip
    """The temperature a run serves `tta`'s logits with: the one fitted on them when there is one,
    else the default of `serving_temperatures` (whose `.tta` then says it was fitted for others)."""
    default, fits = serving_temperatures(run_dir, ckpt, ckpt_name)
    return fits.get(tta, default) if tta else default


def load_run_model(run_or_ckpt: str | Path) -> tuple[torch.nn.Module, dict, Path]:
    """Model (eval mode, CPU) and checkpoint from a run directory (best.pt, else last) or a file."""
    path = run_checkpoint(run_or_ckpt)
    ckpt = load_checkpoint(path)
    if "model_spec" not in ckpt or "model" not in ckpt:
        raise InputError(path, "not a fertrain model checkpoint (no model_spec / model)", kind="checkpoint")
    model = build_from_spec(ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt, path
