"""Loading torch files safely: weights_only=True always, and one clear error for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fertrain.errors import InputError


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found", kind="missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"cannot load {what} safely (weights_only): {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]}", kind="checkpoint") from None  # fmt: skip
