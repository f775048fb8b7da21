"""A trained run's model, rebuilt from the model spec its checkpoints carry.

Every checkpoint fertrain writes stores `model_spec = {backbone, head, head_kwargs}`, so
loading needs nothing from the trainer's configuration (teacher or student alike).
"""

from __future__ import annotations

import json
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


def posthoc_calibration(run_dir: Path) -> dict | None:
    """The run's calibration.json when `fertrain calibrate` wrote it ("posthoc": true), else None."""
    cal = Path(run_dir) / CALIBRATION
    if cal.is_file():
        data = json.loads(cal.read_text(encoding="utf-8"))
        if data.get("posthoc"):
            return data
    return None


def serving_temperature(run_dir: Path, ckpt: dict, ckpt_name: str = "best.pt") -> tuple[float | list[float], str]:
    """The temperature a run serves with, and where it comes from: the post-hoc one `fertrain
    calibrate` wrote (calibration.json with "posthoc": true; a scalar or one per class), else the
    one fitted on validation logits during training (stored in the checkpoint)."""
    data = posthoc_calibration(run_dir)
    if data is not None:
        return data["temperature"], f"{CALIBRATION} (fertrain calibrate)"
    return float(ckpt.get("temperature", 1.0)), f"{ckpt_name} (validation, training)"


def serving_temperature_tta(run_dir: Path) -> str:
    """The --tta whose logits a run's serving temperature was fitted on: `fertrain calibrate
    --tta`'s, else "none" (training fits T on single-view validation logits)."""
    data = posthoc_calibration(run_dir)
    return "none" if data is None else data.get("tta", "none")


def load_run_model(run_or_ckpt: str | Path) -> tuple[torch.nn.Module, dict, Path]:
    """Model (eval mode, CPU) and checkpoint from a run directory (best.pt, else last) or a file."""
    path = run_checkpoint(run_or_ckpt)
    ckpt = load_checkpoint(path)
    if "model_spec" not in ckpt or "model" not in ckpt:
        raise InputError(path, "not a fertrain model checkpoint (no model_spec / model)", kind="checkpoint")
    model = build_from_spec(ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt, path
