"""Shipped YAML configs (the demo's and the FER2013 recipes of docs/accuracy.md).

`--config` takes a file, or a shipped config by name: `fer2013_vgg`, `fer2013_vgg.yaml`, or the
repository path the docs print (`fertrain/configs/fer2013_vgg.yaml`) from any directory, so the
documented commands also work where fertrain was pip-installed and no repository is at hand.
A file that exists always wins.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).parent
REPO_PREFIX = "fertrain/configs"  # how the docs write a shipped config's path


def config_path(name: str) -> Path:
    return SHIPPED_DIR / name


def shipped_names() -> list[str]:
    """The shipped configs' names, without `.yaml`."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def resolve_config_file(value: str | Path) -> Path:
    """`value` when it names a file; else the shipped config it names (see the module's docstring);
    else `value` unchanged, for the reader to refuse as missing."""
    path = Path(value)
    if path.is_file():
        return path
    by_name = len(path.parts) == 1 or path.parent.as_posix().endswith(REPO_PREFIX)
    shipped = config_path(path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    return shipped if by_name and shipped.is_file() else path
