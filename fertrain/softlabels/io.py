"""Reading soft labels and proving they belong to a manifest.

A soft-label file records the manifest sha256 it was computed on and is keyed by row_id and
image sha256. A student refuses a file whose manifest stamp or row keys do not match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fertrain.errors import FertrainError, InputError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.io import Manifest, check_stamp, load_manifest

METADATA_KEY = b"fertrain"
PROB_COLUMNS = tuple(f"prob_{c.lower()}" for c in CLASS_NAMES)
LOGIT_COLUMNS = tuple(f"logit_{c.lower()}" for c in CLASS_NAMES)


def parts_dir(out: str | Path) -> Path:
    """`OUT.parquet.parts`: where an export of OUT keeps its finished parts, its lock and its run status until
    the complete file is written and the folder removed."""
    return Path(f"{out}.parts")


@dataclass
class SoftLabels:
    path: Path
    table: pd.DataFrame
    metadata: dict
    sha256: str  # of the file, checked against its stamp when loaded

    @property
    def probs(self) -> np.ndarray:
        return self.table[list(PROB_COLUMNS)].to_numpy(dtype=np.float32)

    def probs_of(self, rows: pd.DataFrame, remedy: str) -> np.ndarray:
        """The probabilities of manifest `rows`, in their order; a row without any is an error naming the
        first, with `remedy` (what to do about it)."""
        missing = ~rows["row_id"].isin(self.table["row_id"])
        if missing.any():
            first = rows.loc[missing, "row_id"].iloc[0]
            raise InputError(self.path, f"no soft labels for {int(missing.sum())} of {len(rows):,} rows (first: "
                                        f"{first}); {remedy}", kind="missing")  # fmt: skip
        by_row = pd.DataFrame(self.probs, index=self.table["row_id"].to_numpy())
        return by_row.loc[rows["row_id"].to_numpy()].to_numpy(dtype=np.float32, copy=True)


def read_metadata(path: str | Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise FertrainError(f"{path}: not a fertrain soft-label file (no '{METADATA_KEY.decode()}' metadata)")
    return json.loads(meta[METADATA_KEY])


PROB_TOLERANCE = 1e-3  # |sum of a row's probabilities - 1| allowed (float32 storage)


def check_probabilities(path: Path, table: pd.DataFrame) -> None:
    """Every row: finite, non-negative probabilities summing to 1; row ids unique. Errors name the row."""
    missing = [c for c in ("row_id", *PROB_COLUMNS) if c not in table]
    if missing:
        raise InputError(path, f"not a soft-label table: missing columns {', '.join(missing)}", kind="header")
    dup = table["row_id"].duplicated(keep=False)
    if dup.any():
        raise InputError(path, f"row id {table.loc[dup, 'row_id'].iloc[0]!r} appears {int(dup.sum())} times; each "
                               "manifest row may have one soft label", kind="duplicate")  # fmt: skip
    probs = table[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    checks = (("is not a finite number", ~np.isfinite(probs).all(1)), ("is negative", (probs < 0).any(1)),
              ("probabilities do not sum to 1", np.abs(np.nan_to_num(probs).sum(1) - 1) > PROB_TOLERANCE))  # fmt: skip
    for what, bad in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = ", ".join(f"{c.removeprefix('prob_')} {v:.4g}" for c, v in zip(PROB_COLUMNS, probs[i], strict=True))
            subject = "a probability " + what if what != "probabilities do not sum to 1" else what
            raise InputError(path, f"row {i + 1} (row id {table['row_id'].iloc[i]!r}): {subject} ({row}); "
                                   f"{int(bad.sum())} such row(s)", kind="value")  # fmt: skip


def load_softlabels(path: str | Path, manifest: Manifest | str | Path | None = None) -> SoftLabels:
    """Load (stamp and probabilities checked); with `manifest` (a Manifest or its path), refuse
    soft labels made for another manifest or with mismatched row keys. Soft labels of the manifest
    that `manifest` was cleaned from (`fertrain manifest clean`) are narrowed to the rows it kept."""
    path = Path(path)
    digest = check_stamp(path, what="soft-label file")
    meta = read_metadata(path)
    table = pd.read_parquet(path)
    check_probabilities(path, table)
    if manifest is not None and not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    if manifest is not None:
        keys = manifest.df.set_index("row_id")["sha256"]
        if meta.get("manifest_sha256") != manifest.sha256:
            made_for = str(meta.get("manifest_sha256"))[:12]
            source = manifest.derived_from()
            if source is None or meta.get("manifest_sha256") != source:
                raise FertrainError(f"{path}: soft labels were made for manifest sha256 {made_for}… but "
                                    f"{manifest.path} is {str(manifest.sha256)[:12]}…; re-export them")  # fmt: skip
            # a manifest cleaned from the one they were made for: the rows it kept (keys checked below)
            table = table[table["row_id"].isin(keys.index)].reset_index(drop=True)
        missing = ~table["row_id"].isin(keys.index)
        if missing.any():
            raise FertrainError(f"{path}: {int(missing.sum())} row ids are not in {manifest.path} "
                                f"(first: {table.loc[missing, 'row_id'].iloc[0]})")  # fmt: skip
        wrong = keys.loc[table["row_id"]].to_numpy() != table["sha256"].to_numpy()
        if wrong.any():
            raise FertrainError(f"{path}: {int(wrong.sum())} rows have a different image sha256 than "
                                f"{manifest.path} (first: {table.loc[wrong, 'row_id'].iloc[0]})")  # fmt: skip
    return SoftLabels(path, table, meta, digest)
