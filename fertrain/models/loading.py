"""A trained run's model, rebuilt from the model spec its checkpoints carry.

Every checkpoint fertrain writes stores `model_spec = {backbone, head, head_kwargs}`, so
loading needs nothing from the trainer's configuration (teacher or student alike).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

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


def serving_temperature(run_dir: Path, ckpt: dict, ckpt_name: str = "best.pt") -> ServingTemperature:
    """The temperature a run serves with: the post-hoc one `fertrain calibrate` wrote
    (calibration.json with "posthoc": true, fitted on the logits of its `--tta`), else the one
    fitted on single-view validation logits during training (stored in the checkpoint)."""
    cal = Path(run_dir) / CALIBRATION
    if cal.is_file():
        data = json.loads(cal.read_text(encoding="utf-8"))
        if data.get("posthoc"):
            return ServingTemperature(data["temperature"], f"{CALIBRATION} (fertrain calibrate)",
                                      data.get("tta", "none"))  # fmt: skip
    return ServingTemperature(float(ckpt.get("temperature", 1.0)), f"{ckpt_name} (validation, training)", "none")


def load_run_model(run_or_ckpt: str | Path) -> tuple[torch.nn.Module, dict, Path]:
    """Model (eval mode, CPU) and checkpoint from a run directory (best.pt, else last) or a file."""
    path = run_checkpoint(run_or_ckpt)
    ckpt = load_checkpoint(path)
    if "model_spec" not in ckpt or "model" not in ckpt:
        raise InputError(path, "not a fertrain model checkpoint (no model_spec / model)", kind="checkpoint")
    model = build_from_spec(ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt, path
