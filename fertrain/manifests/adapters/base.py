"""What every adapter gets and returns.

An adapter turns one dataset's native layout into `Candidate`s through an explicit label
crosswalk. It never reads pixels for hashing (the build does that in parallel) and never
decides what to do with bad input itself: it calls `ctx.bad(...)`, which raises an
`InputError` naming file and line, or counts the row as skipped under `--skip-bad`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fertrain.errors import ConfigError, InputError
from fertrain.manifests.image_files import IMAGE_EXTENSIONS
from fertrain.manifests.schema import Candidate


@dataclass
class AdapterContext:
    source: str
    root: Path
    options: dict[str, Any]
    cache_dir: Path
    skip_bad: bool = False
    drops: Counter = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    def bad(self, file: str | Path, message: str, line: int | None = None, kind: str = "bad") -> None:
        """Report bad input: raise, or count it as `bad_<kind>` when skipping bad rows."""
        if not self.skip_bad:
            raise InputError(file, message, line=line, kind=kind)
        self.drops[f"bad_{kind}"] += 1

    def drop(self, reason: str, n: int = 1) -> None:
        """Count a row dropped by design (contempt, unknown, ...), never silently."""
        self.drops[reason] += n

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise InputError(path, f"missing folder: expected {what}", kind="missing")
        return path

    def require_file(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise InputError(path, f"missing file: expected {what}", kind="missing")
        return path

    def relative(self, folder: Path, name: str) -> str:
        """Path of `name` inside `folder`, relative to the source root (posix form).

        `folder` must lie inside the root; `name` is kept as written so that the build's
        escape check sees any `..` in it.
        """
        try:
            prefix = folder.relative_to(self.root).as_posix()
        except ValueError:
            msg = f"image folder must lie inside the source root {self.root}"
            raise InputError(folder, msg, kind="config") from None
        name = name.strip().replace("\\", "/")
        return name if prefix == "." else f"{prefix}/{name}"

    def resolve(self, value: str | Path) -> Path:
        """An option path: absolute as given, else relative to the source root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


AdapterFn = Callable[[AdapterContext], list[Candidate]]


@dataclass(frozen=True)
class Adapter:
    name: str
    fn: AdapterFn
    defaults: Mapping[str, Any]
    doc: str

    def options(self, given: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "(none)"
            raise ConfigError(
                f"source {source!r}: adapter {self.name!r} has no option(s) {', '.join(unknown)}; "
                f"known options: {known}"
            )
        return {**self.defaults, **given}


def read_csv_rows(
    ctx: AdapterContext, path: Path, expected_header: list[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row dict) after checking the header names exactly what we expect."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != expected_header:
            raise InputError(
                path,
                f"wrong header {header!r}; expected {','.join(expected_header)!r}",
                line=1,
                kind="header",
            )
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(expected_header):
                ctx.bad(path, f"expected {len(expected_header)} fields, found {len(row)}", lineno, "fields")
                continue
            yield lineno, dict(zip(expected_header, row, strict=True))


def iter_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name so every build sees the same order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def parse_int(ctx: AdapterContext, value: str, file: Path, line: int, what: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        ctx.bad(file, f"{what} must be an integer, found {value!r}", line, "value")
        return None
