"""Shipped YAML configs (demo teachers); `config_path(name)` finds one inside the package."""

from __future__ import annotations

from pathlib import Path


def config_path(name: str) -> Path:
    return Path(__file__).with_name(name)
