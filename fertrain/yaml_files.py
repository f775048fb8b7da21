"""Reading a user's YAML file (configs, recipes, plans, unfreeze schedules) the one way: a
missing file or a syntax error is one ConfigError naming what the file is for, the file and the
line, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fertrain.errors import ConfigError


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The parsed content of `path` (None for an empty file). `what` names the file's role in
    messages: `--config`, `recipe`, `plan`, `--unfreeze-schedule`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{what} {where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
