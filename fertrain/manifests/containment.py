"""Images are read only inside their recorded root.

A manifest row names an image by a path relative to its source root. Both a path that climbs
out (`../../etc/hostname`) and a symbolic link inside the root that points outside it (a file,
a class folder, an ExpW image) would make fertrain read data from elsewhere. Builds, verify
and every load check real paths; directories are resolved once each, so checking a dataset
costs one `lstat` per image.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pandas as pd


def climbs_out(rel: str) -> bool:
    """A relative path that is absolute, or whose `..` segments leave its root."""
    norm = posixpath.normpath(rel.replace("\\", "/"))
    return posixpath.isabs(rel) or os.path.isabs(rel) or norm == ".." or norm.startswith("../")


def climbing_rows(paths: pd.Series) -> pd.Series:
    """`climbs_out` over a column of relative paths (True where a path escapes); only the few
    paths that could escape (a leading slash or drive, or `..` anywhere) are parsed."""
    p = paths.astype(str)
    suspect = p.str.startswith(("/", "\\")) | p.str.contains("..", regex=False) | p.str.match(r"^[A-Za-z]:")
    escaping = pd.Series(False, index=paths.index)
    escaping[suspect] = p[suspect].map(climbs_out)
    return escaping


class RootGuard:
    """Tells whether paths under `root` really resolve inside it (links followed)."""

    def __init__(self, root: str | Path):
        self.root = os.path.realpath(root)
        self._dirs: dict[str, bool] = {}

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def escape(self, path: str | Path) -> str | None:
        """The real location of `path` when it lies outside the root, else None."""
        path = str(path)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self._dirs[parent] = self._inside(os.path.realpath(parent))
        if not self._dirs[parent]:
            return os.path.realpath(path)
        if os.path.islink(path):
            real = os.path.realpath(path)
            return None if self._inside(real) else real
        return None
