"""Manifest files: CSV or Parquet by extension, each with a `.sha256` stamp beside it.

The stamp is the sha256 of the manifest file's bytes. Every consumer that records a
manifest (alignment reports, soft labels) checks the stamp first, so a manifest edited
after it was built is refused instead of silently training on different rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fertrain.atomic import atomic_path, atomic_write_text
from fertrain.errors import ConfigError, InputError, StampMismatchError
from fertrain.labels import NUM_CLASSES, SOFT_COLUMNS
from fertrain.manifests.containment import RootGuard, climbing_rows
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


REMAKE = {"manifest": "rebuild it with `fertrain manifest build`",
          "soft-label file": "export it again with `fertrain export-softlabels`"}  # fmt: skip


def check_stamp(path: str | Path, what: str = "manifest") -> str:
    """Return the file's sha256 if it matches its stamp; raise naming both otherwise. `what`
    names the kind of file in messages ("manifest" or "soft-label file")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found", kind="missing")
    recorded = read_stamp(path)
    if recorded is None:
        raise StampMismatchError(f"{path}: no stamp {stamp_path(path).name}, so the {what}'s content cannot be "
                                 f"checked; {REMAKE[what]}")  # fmt: skip
    actual = sha256_file(path)
    if actual != recorded:
        raise StampMismatchError(
            f"{path}: content sha256 {actual[:12]}… does not match its stamp {recorded[:12]}… "
            f"({stamp_path(path).name}); the {what} was modified after it was written — {REMAKE[what]}"
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

    def image_paths(self, rows: pd.DataFrame | None = None, *, check: bool = True) -> list[Path]:
        """Absolute image paths of `rows` (default: every row of the manifest). With `check`, a
        path that resolves outside its root (a symbolic link pointing elsewhere) is an error."""
        rows = self.df if rows is None else rows
        roots = self.root_dirs()
        paths = [roots[r] / p for r, p in zip(rows["root"], rows["path"], strict=True)]
        if check:
            outside = self.outside_root(rows, paths, first_only=True)
            if outside:
                row_id, path, real = outside[0]
                raise InputError(self.path, f"row id {row_id}: image {path} resolves to {real}, outside its root "
                                            "(a symbolic link?); fertrain reads images only inside their recorded "
                                            "root", kind="path")  # fmt: skip
        return paths

    def outside_root(self, rows: pd.DataFrame, paths: list[Path], *,
                     first_only: bool = False) -> list[tuple[str, Path, str]]:  # fmt: skip
        """(row id, path, real path) of the rows whose image resolves outside its root."""
        guards = {r: RootGuard(p) for r, p in self.root_dirs().items()}
        found = []
        for row_id, root, path in zip(rows["row_id"], rows["root"], paths, strict=True):
            real = guards[root].escape(path)
            if real is not None:
                found.append((str(row_id), path, real))
                if first_only:
                    break
        return found

    @property
    def has_soft_labels(self) -> bool:
        return all(c in self.df for c in SOFT_COLUMNS)

    def derived_from(self) -> str | None:
        """The sha256 of the manifest this one was derived from (`fertrain manifest clean` keeps its
        row ids and drops or relabels rows), as its summary records; None for a built manifest."""
        path = summary_path(self.path)
        if self.sha256 is None or not path.is_file():
            return None
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(path, f"not a manifest summary ({exc})", kind="format") from None
        if summary.get("sha256") != self.sha256:  # a summary left from another content of this file
            return None
        return (summary.get("derived_from") or {}).get("sha256")


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
    check_rows(path, df)
    return Manifest(normalize_dtypes(df), path, digest)


def check_rows(path: Path, df: pd.DataFrame) -> None:
    """Values every consumer relies on: labels are class indices, image paths stay inside their root."""
    labels = pd.to_numeric(df["label"], errors="coerce")
    for what, bad in (
        (f"label is not a class index 0..{NUM_CLASSES - 1}", ~labels.between(0, NUM_CLASSES - 1)),
        ("image path leaves its root (absolute, or `..`)", climbing_rows(df["path"])),
    ):
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            value = df["label"].iloc[i] if what.startswith("label") else df["path"].iloc[i]
            raise InputError(path, f"row {i + 1} (row id {df['row_id'].iloc[i]}): {what}: {value!r}; "
                                   f"{int(bad.sum())} such row(s)", kind="value")  # fmt: skip
