"""Error types that the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class FertrainError(Exception):
    """Base class for errors caused by user input or run state (not bugs)."""


class InputError(FertrainError):
    """Bad input data: names the file, the line (when there is one) and what was expected."""

    def __init__(self, file: str | Path, message: str, line: int | None = None, kind: str = "bad"):
        self.file = str(file)
        self.line = line
        self.kind = kind
        self.message = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")


class ConfigError(FertrainError):
    """A recipe, flag or option has a value fertrain cannot use."""


class StampMismatchError(FertrainError):
    """A manifest's content no longer matches its recorded sha256 stamp."""


class DiskFullError(FertrainError):
    """A write ran out of disk space; the file it would have replaced is unchanged."""

    def __init__(self, path: str | Path, free: int):
        self.path = Path(path)
        super().__init__(f"{path}: the disk is full ({free:,} bytes free on its file system); {self.path.name} was "
                         "not changed. Free some space and re-run (a training run resumes from its last checkpoint)")
