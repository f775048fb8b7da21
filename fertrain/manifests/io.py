"""Manifest files: CSV or Parquet by extension, each with a `.sha256` stamp beside it.

The stamp is the sha256 of the manifest file's bytes. Every consumer that records a
manifest (alignment reports, soft labels) checks the stamp first, so a manifest edited
after it was built is refused instead of silently training on different rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fertrain.atomic import atomic_path, atomic_write_text
from fertrain.errors import ConfigError, InputError, StampMismatchError
from fertrain.labels import SOFT_COLUMNS
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.schema import BOX_COLUMNS, COLUMNS

FORMATS = (".csv", ".parquet")
_STRING_COLUMNS = ("row_id", "source", "split", "label_name", "native_label", "root", "path", "sha256",
                   "dhash", "landmarks", "group", "dup_of")  # fmt: skip


def manifest_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"manifest {path}: extension {suffix or '(none)'} unknown; expected .csv or .parquet")
    return suffix


def stamp_path(path: str | Path) -> Path:
    return Path(f"{path}.sha256")


def summary_path(path: str | Path) -> Path:
    return Path(f"{path}.summary.json")


def dedup_report_path(path: str | Path) -> Path:
    return Path(f"{path}.dedup.csv")


def normalize_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """One set of dtypes whatever the file format, so CSV and Parquet load identically."""
    df = df.copy()
    for col in _STRING_COLUMNS:
        if col in df:
            df[col] = df[col].astype("string")
    df["label"] = df["label"].astype("int64")
    for col in ("width", "height"):
        df[col] = df[col].astype("int64")
    for col in BOX_COLUMNS:
        df[col] = df[col].astype("Int64")
    for col in SOFT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("float32")
    return df


def write_manifest_file(df: pd.DataFrame, path: str | Path) -> str:
    """Write atomically and stamp; returns the sha256. The stamp is written last."""
    path = Path(path)
    fmt = manifest_format(path)
    with atomic_path(path) as tmp:
        if fmt == ".csv":
            df.to_csv(tmp, index=False, lineterminator="\n")
        else:
            df.to_parquet(tmp, index=False, engine="pyarrow")
    return write_stamp(path)


def write_stamp(path: str | Path) -> str:
    """Write `<path>.sha256` (sha256sum format) for a finished file; returns the digest."""
    path = Path(path)
    digest = sha256_file(path)
    atomic_write_text(stamp_path(path), f"{digest}  {path.name}\n")
    return digest


def read_stamp(path: str | Path) -> str | None:
    sp = stamp_path(path)
    if not sp.is_file():
        return None
    text = sp.read_text(encoding="utf-8").split()
    return text[0].lower() if text else None


def check_stamp(path: str | Path) -> str:
    """Return the manifest's sha256 if it matches its stamp; raise naming both otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found", kind="missing")
    recorded = read_stamp(path)
    if recorded is None:
        raise StampMismatchError(f"{path}: no stamp {stamp_path(path).name}; rebuild the manifest with "
                                 "`fertrain manifest build` so its content is recorded")  # fmt: skip
    actual = sha256_file(path)
    if actual != recorded:
        raise StampMismatchError(
            f"{path}: content sha256 {actual[:12]}… does not match its stamp {recorded[:12]}… "
            f"({stamp_path(path).name}); the manifest was modified after it was built — rebuild it"
        )
    return actual


@dataclass
class Manifest:
    """A loaded manifest: rows, where it lives (for resolving roots) and its sha256."""

    df: pd.DataFrame
    path: Path
    sha256: str | None

    def root_dirs(self) -> dict[str, Path]:
        """Each distinct `root` value resolved against the manifest's folder."""
        base = self.path.parent
        return {r: (Path(r) if os.path.isabs(r) else (base / r)).resolve() for r in self.df["root"].unique()}

    def image_paths(self, rows: pd.DataFrame | None = None) -> list[Path]:
        """Absolute image paths of `rows` (default: every row of the manifest)."""
        rows = self.df if rows is None else rows
        roots = self.root_dirs()
        return [roots[r] / p for r, p in zip(rows["root"], rows["path"], strict=True)]

    @property
    def has_soft_labels(self) -> bool:
        return all(c in self.df for c in SOFT_COLUMNS)


def load_manifest(path: str | Path, *, verify_stamp: bool = True) -> Manifest:
    """Load a manifest; with `verify_stamp` a missing or mismatched stamp is an error."""
    path = Path(path)
    fmt = manifest_format(path)
    digest = check_stamp(path) if verify_stamp else None
    if not path.is_file():
        raise InputError(path, "manifest not found", kind="missing")
    if fmt == ".csv":
        # Only an empty cell is missing: a group or label literally named "NA" stays a string.
        df = pd.read_csv(path, dtype={c: "string" for c in _STRING_COLUMNS}, keep_default_na=False, na_values=[""])
    else:
        df = pd.read_parquet(path, engine="pyarrow")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"not a fertrain manifest: missing columns {', '.join(missing)}", kind="header")
    return Manifest(normalize_dtypes(df), path, digest)
