"""Small parsing helpers shared by the command modules."""

from __future__ import annotations


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeatable options that also take comma lists: `--x a --x b,c` -> [a, b, c]; None when not given."""
    if values is None:
        return None
    return [s for v in values for s in v.split(",") if s]
